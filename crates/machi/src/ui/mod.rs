//! The staff UI: server-rendered HTML (askama), Japanese with an English
//! switch, usable by keyboard alone (j390, j400): every action is a link or
//! a form button, access keys on the main menu, visible focus, no script
//! needed.
//!
//! A session cookie (HttpOnly, SameSite=Strict) identifies the staff member;
//! every form carries the session's CSRF token. The tenant always comes from
//! the session, never from the URL.

// Handlers answer with a page either way: an early `Err(Response)` is the
// error page, built once per request.
#![allow(clippy::result_large_err)]

mod admin;
mod auditview;
mod certificates;
mod changes;
mod counter_filing;
pub mod forms;
mod grants;
mod hooks;
mod inbox;
mod pages;
mod prefill;
mod procedures;
mod review;
mod support;
mod surveys;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;
use machi_domain::access::{Permission, Role};
use machi_domain::error::Localized;
use machi_domain::ids::MunicipalityCode;

use crate::api::AppState;
use crate::api::auth::{SESSION_COOKIE, constant_time_eq, cookie};
use crate::service::{Caller, ServiceError};

/// `; Secure` on the session cookie when `MACHI_SECURE_COOKIES` is set
/// (behind HTTPS, as in production; the local demo is plain HTTP).
pub fn secure_attr() -> &'static str {
    static SECURE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *SECURE.get_or_init(|| {
        std::env::var("MACHI_SECURE_COOKIES").is_ok_and(|v| !v.is_empty() && v != "0")
    }) {
        "; Secure"
    } else {
        ""
    }
}

/// The base URL printed on certificates for the verification page:
/// `MACHI_PUBLIC_URL` (e.g. `https://machi.example.lg.jp`), else the
/// request's host over plain HTTP (the local demo).
pub fn public_url(headers: &HeaderMap) -> String {
    if let Ok(u) = std::env::var("MACHI_PUBLIC_URL")
        && (u.starts_with("https://") || u.starts_with("http://"))
    {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The language cookie's name.
pub const LANG_COOKIE: &str = "machi_lang";

/// The page language: Japanese unless English was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lang {
    pub en: bool,
}

impl Lang {
    pub fn of(headers: &HeaderMap) -> Lang {
        Lang {
            en: cookie(headers, LANG_COOKIE).as_deref() == Some("en"),
        }
    }
    /// The text in the page's language.
    pub fn t<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        if self.en { en } else { ja }
    }
    pub fn code(&self) -> &'static str {
        if self.en { "en" } else { "ja" }
    }
}

/// One UI route: its path, the methods it answers, its handlers. The
/// router is built from this list, and the isolation test walks it.
pub struct UiRoute {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub public: bool,
    pub handler: MethodRouter<AppState>,
}

fn route(
    path: &'static str,
    methods: &'static [&'static str],
    handler: MethodRouter<AppState>,
) -> UiRoute {
    UiRoute {
        path,
        methods,
        public: false,
        handler,
    }
}

fn public(
    path: &'static str,
    methods: &'static [&'static str],
    handler: MethodRouter<AppState>,
) -> UiRoute {
    UiRoute {
        path,
        methods,
        public: true,
        handler,
    }
}

/// Every UI route.
pub fn routes() -> Vec<UiRoute> {
    use axum::routing::{get, post};
    vec![
        public("/", &["GET"], get(pages::root)),
        public(
            "/login",
            &["GET", "POST"],
            get(pages::login_form).post(pages::login),
        ),
        public("/lang", &["GET"], get(pages::set_lang)),
        public("/static/machi.css", &["GET"], get(pages::css)),
        public(
            "/activate",
            &["GET", "POST"],
            get(grants::activate_form).post(grants::activate),
        ),
        public(
            "/verify",
            &["GET", "POST"],
            get(certificates::verify_form).post(certificates::verify),
        ),
        route("/logout", &["POST"], post(pages::logout)),
        route("/ui", &["GET"], get(pages::home)),
        route("/ui/search", &["GET"], get(pages::search)),
        route(
            "/ui/residents/{addressee_number}",
            &["GET"],
            get(pages::resident),
        ),
        route(
            "/ui/residents/{addressee_number}/my-number",
            &["POST"],
            post(pages::reveal_my_number),
        ),
        route(
            "/ui/residents/{addressee_number}/counter",
            &["GET"],
            get(counter_filing::choose),
        ),
        route(
            "/ui/residents/{addressee_number}/counter/{procedure}",
            &["GET", "POST"],
            get(counter_filing::form).post(counter_filing::submit),
        ),
        route(
            "/ui/households/{household_number}",
            &["GET"],
            get(pages::household),
        ),
        route("/ui/changes/{change_id}", &["GET"], get(pages::change)),
        route(
            "/ui/entry",
            &["GET", "POST"],
            get(changes::entry_form).post(changes::enter),
        ),
        route("/ui/inbox", &["GET"], get(inbox::list)),
        route("/ui/inbox/refused", &["GET"], get(inbox::refused)),
        route(
            "/ui/inbox/refused/reimport",
            &["POST"],
            post(inbox::reimport),
        ),
        route("/ui/surveys", &["GET"], get(surveys::list)),
        route("/ui/surveys/{survey}", &["GET"], get(surveys::results)),
        route("/ui/inbox/{filing_id}", &["GET"], get(inbox::filing)),
        route("/ui/inbox/{filing_id}/act", &["POST"], post(inbox::act)),
        route(
            "/ui/inbox/{filing_id}/files/{field}",
            &["GET"],
            get(inbox::attachment),
        ),
        route("/ui/approvals", &["GET"], get(changes::approvals)),
        route("/ui/approvals/bulk", &["POST"], post(changes::approve_bulk)),
        route(
            "/ui/approvals/{pending_id}",
            &["GET"],
            get(changes::pending_page),
        ),
        route(
            "/ui/approvals/{pending_id}/decide",
            &["POST"],
            post(changes::decide),
        ),
        route("/ui/support", &["GET"], get(support::list)),
        route(
            "/ui/support/new",
            &["GET", "POST"],
            get(support::new_form).post(support::register),
        ),
        route("/ui/support/{measure_id}", &["GET"], get(support::detail)),
        route(
            "/ui/support/{measure_id}/act",
            &["POST"],
            post(support::act),
        ),
        route(
            "/ui/certificates/new",
            &["GET"],
            get(certificates::new_form),
        ),
        route("/ui/certificates", &["POST"], post(certificates::issue)),
        route(
            "/ui/certificates/issued/{batch}",
            &["GET"],
            get(certificates::issued),
        ),
        route(
            "/ui/certificates/issued/{batch}/{copy}",
            &["GET"],
            get(certificates::issued_pdf),
        ),
        route("/ui/admin/issuer", &["POST"], post(admin::set_issuer)),
        route(
            "/ui/admin/certificate-fee",
            &["POST"],
            post(admin::set_certificate_fee),
        ),
        route(
            "/ui/admin/extract-schedule",
            &["POST"],
            post(admin::set_extract_schedule),
        ),
        route("/ui/admin/extract", &["POST"], post(admin::run_extract)),
        route("/ui/audit", &["GET"], get(admin::audit)),
        route("/ui/stats", &["GET"], get(admin::stats)),
        route(
            "/ui/admin/accounts",
            &["GET", "POST"],
            get(admin::accounts).post(admin::create_account),
        ),
        route(
            "/ui/admin/accounts/state",
            &["POST"],
            post(admin::account_state),
        ),
        route(
            "/ui/admin/accounts/role",
            &["POST"],
            post(admin::account_role),
        ),
        route("/ui/admin/clients", &["POST"], post(admin::create_client)),
        route(
            "/ui/admin/clients/state",
            &["POST"],
            post(admin::client_state),
        ),
        route(
            "/ui/admin/clients/scopes",
            &["POST"],
            post(admin::client_scopes),
        ),
        route(
            "/ui/admin/clients/direct",
            &["POST"],
            post(admin::client_direct),
        ),
        route(
            "/ui/admin/procedures",
            &["GET", "POST"],
            get(procedures::list).post(procedures::decide),
        ),
        route(
            "/ui/admin/subscriptions",
            &["GET", "POST"],
            get(hooks::list).post(hooks::create),
        ),
        route(
            "/ui/admin/subscriptions/{subscription_id}",
            &["GET"],
            get(hooks::detail),
        ),
        route(
            "/ui/admin/subscriptions/{subscription_id}/act",
            &["POST"],
            post(hooks::act),
        ),
        route("/ui/grants", &["GET"], get(grants::list)),
        route(
            "/ui/grants/{grant_id}/decide",
            &["POST"],
            post(grants::decide),
        ),
        route("/ui/grants/rotate", &["POST"], post(grants::rotate)),
        route("/ui/grants/reissue", &["POST"], post(grants::reissue)),
        route(
            "/ui/platform/tenants",
            &["GET", "POST"],
            get(admin::tenants).post(admin::create_tenant),
        ),
    ]
}

/// The UI router.
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, u| r.route(u.path, u.handler))
        .with_state(state)
}

/// The signed-in staff member of a request, with the page language.
pub struct Ctx {
    pub caller: Caller,
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub tenant: Option<MunicipalityCode>,
    pub tenant_name: String,
    pub csrf: String,
    pub lang: Lang,
    pub session_token: String,
    /// Work waiting, for the menu: provisional changes to review (for a
    /// supervisor) and the caller's entries sent back (for a clerk).
    pub counts: MenuCounts,
}

/// The counts the menu shows beside its items.
#[derive(Debug, Clone, Copy, Default)]
pub struct MenuCounts {
    pub approvals: i64,
    pub returned: i64,
    /// New filings from the citizen portal nobody has taken up (申請管理).
    pub inbox: i64,
}

impl Ctx {
    /// The signed-in staff member, or a redirect to the login page.
    pub async fn load(s: &AppState, headers: &HeaderMap) -> Result<Ctx, Response> {
        let lang = Lang::of(headers);
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/login").into_response());
        };
        let caller = match s.registry.session_caller(&token).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Redirect::to("/login").into_response()),
            Err(e) => return Err(error_page(lang, &e.into())),
        };
        let Caller::Staff {
            tenant,
            login,
            display_name,
            role,
            csrf,
            ..
        } = &caller
        else {
            return Err(Redirect::to("/login").into_response());
        };
        let tenant_name = match tenant {
            Some(t) => s
                .registry
                .tenant(t)
                .await
                .map(|t| t.name)
                .unwrap_or_default(),
            None => lang.t("基盤運用", "Platform").to_string(),
        };
        let mut counts = MenuCounts::default();
        if let Some(t) = tenant {
            if role.allows(Permission::ApproveChange) {
                counts.approvals = s.registry.pending_count(t).await.unwrap_or(0);
            }
            if role.allows(Permission::EnterChange) {
                counts.returned = s.registry.returned_count(t, login).await.unwrap_or(0);
            }
            if role.allows(crate::service::inbox::roles::READ) {
                counts.inbox = s.registry.inbox_new_count(t).await.unwrap_or(0);
            }
        }
        Ok(Ctx {
            counts,
            login: login.clone(),
            display_name: display_name.clone(),
            role: *role,
            tenant: tenant.clone(),
            tenant_name,
            csrf: csrf.clone(),
            lang,
            session_token: token,
            caller,
        })
    }

    /// The signed-in caller of a page who may do `p`, with their tenant.
    pub async fn for_page(
        s: &AppState,
        headers: &HeaderMap,
        p: Permission,
    ) -> Result<(Ctx, MunicipalityCode), Response> {
        let ctx = Ctx::load(s, headers).await?;
        let tenant = ctx.require(p)?;
        Ok((ctx, tenant))
    }

    /// The signed-in caller of a form post: session, the form's CSRF token,
    /// and permission `p`, with their tenant.
    pub async fn for_form(
        s: &AppState,
        headers: &HeaderMap,
        form: &forms::FormData,
        p: Permission,
    ) -> Result<(Ctx, MunicipalityCode), Response> {
        let ctx = Ctx::load(s, headers).await?;
        ctx.check_csrf(&form.text("csrf"))?;
        let tenant = ctx.require(p)?;
        Ok((ctx, tenant))
    }

    /// The caller's tenant, if the caller may do `p` there.
    pub fn require(&self, p: Permission) -> Result<MunicipalityCode, Response> {
        match &self.tenant {
            Some(t) if self.role.allows(p) => Ok(t.clone()),
            _ => Err(self.error(&UiError::forbidden())),
        }
    }

    /// Checks the CSRF token a form sent.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Response> {
        if constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(self.error(&UiError {
                status: StatusCode::FORBIDDEN,
                ja: "フォームの有効期限が切れたか、不正な送信です。画面を開き直してください。"
                    .into(),
                en: "the form expired or was not sent from this site; open the page again".into(),
            }))
        }
    }

    /// The error page, a full page: header, menu, sign-out and the way
    /// home.
    pub fn error(&self, e: &UiError) -> Response {
        self.error_back(e, None)
    }

    /// The error page with a way back to where the person came from
    /// (`href`, its label in Japanese and English) besides the way home.
    pub fn error_back(&self, e: &UiError, back: Option<(&str, &str, &str)>) -> Response {
        let page = FullErrorPage {
            c: Chrome::new(self, "処理できませんでした", "This could not be done"),
            message: if self.lang.en { &e.en } else { &e.ja },
            back: back.map(|(href, ja, en)| (href.to_string(), self.lang.t(ja, en).to_string())),
        };
        (e.status, html(&page)).into_response()
    }

    /// The error page of a service call about `asked` (what the staff
    /// member typed or clicked, e.g. 宛名番号 …). A support-measure block
    /// (j440) is the one refusal every block gives, prefixed with what was
    /// asked for, so that the support officer knows which request to
    /// release; it never says who in it is protected.
    pub fn refused(&self, e: ServiceError, asked_ja: &str, asked_en: &str) -> Response {
        let blocked = matches!(e, ServiceError::SupportBlocked { .. });
        let mut ui = UiError::from(e);
        if blocked {
            ui.ja = format!("{asked_ja}：{}", ui.ja);
            ui.en = format!("{asked_en}: {}", ui.en);
        }
        self.error(&ui)
    }

    pub fn role_label(&self) -> &'static str {
        if self.lang.en {
            self.role.label_en()
        } else {
            self.role.label_ja()
        }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
    }
}

/// An error as a person reads it.
#[derive(Debug, Clone)]
pub struct UiError {
    pub status: StatusCode,
    pub ja: String,
    pub en: String,
}

impl UiError {
    pub fn forbidden() -> Self {
        UiError {
            status: StatusCode::FORBIDDEN,
            ja: "この画面を使う権限がありません。".into(),
            en: "your role does not allow this page".into(),
        }
    }
}

impl From<ServiceError> for UiError {
    fn from(e: ServiceError) -> Self {
        let api = crate::api::error::ApiError::from(e);
        UiError {
            status: api.status,
            ja: api.body.message_ja,
            en: api.body.message_en,
        }
    }
}

impl From<&dyn Localized> for UiError {
    fn from(e: &dyn Localized) -> Self {
        UiError {
            status: StatusCode::BAD_REQUEST,
            ja: e.message_ja(),
            en: e.message_en(),
        }
    }
}

/// The error page of a signed-in staff member.
#[derive(Template)]
#[template(path = "error.html")]
struct FullErrorPage<'a> {
    c: Chrome,
    message: &'a str,
    back: Option<(String, String)>,
}

/// The error page before anyone is signed in (no menu to show).
#[derive(Template)]
#[template(path = "error_bare.html")]
struct ErrorPage<'a> {
    l: Lang,
    status: u16,
    message: &'a str,
}

pub fn error_page(lang: Lang, e: &UiError) -> Response {
    let page = ErrorPage {
        l: lang,
        status: e.status.as_u16(),
        message: if lang.en { &e.en } else { &e.ja },
    };
    (e.status, html(&page)).into_response()
}

/// Renders a template as an HTML response (no caching: pages hold personal data).
pub fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::HeaderName::from_static("x-frame-options"),
                    HeaderValue::from_static("DENY"),
                ),
                (
                    header::HeaderName::from_static("content-security-policy"),
                    HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// 和暦 date and time (JST) of a timestamp in microseconds, as a person
/// writes it: 令和8年12月6日 13時05分.
pub fn when(micros: i64) -> String {
    use chrono::Timelike;
    static ERAS: std::sync::OnceLock<machi_domain::dates::EraTable> = std::sync::OnceLock::new();
    let eras = ERAS.get_or_init(machi_domain::dates::EraTable::standard);
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|t| {
            let t = t.with_timezone(&crate::service::clock::jst());
            format!(
                "{} {}時{:02}分",
                eras.format_wareki(t.date_naive()),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// The hour of a timestamp in microseconds (JST), as [`when`] writes it
/// with the minutes at zero: for grouping by hour.
pub fn hour_of(micros: i64) -> String {
    let full = when(micros);
    match full.rfind('時') {
        Some(i) => format!("{}時台", &full[..i]),
        None => full,
    }
}

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub l: Lang,
    pub title: String,
    pub display_name: String,
    pub login: String,
    pub role_label: String,
    pub tenant_name: String,
    pub csrf: String,
    pub personal: bool,
    /// 申請管理: the inbox of portal filings.
    pub inbox: bool,
    pub enter: bool,
    pub approve: bool,
    pub support: bool,
    pub audit: bool,
    pub aggregates: bool,
    pub accounts: bool,
    /// Access proposals: whoever proposes or approves them.
    pub grants: bool,
    pub platform: bool,
    /// A message after a redirect (e.g. "saved").
    pub flash: Option<String>,
    pub counts: MenuCounts,
}

impl Chrome {
    pub fn new(ctx: &Ctx, title_ja: &str, title_en: &str) -> Chrome {
        Chrome {
            l: ctx.lang,
            title: ctx.lang.t(title_ja, title_en).to_string(),
            display_name: ctx.display_name.clone(),
            login: ctx.login.clone(),
            role_label: ctx.role_label().to_string(),
            tenant_name: ctx.tenant_name.clone(),
            csrf: ctx.csrf.clone(),
            personal: ctx.can(Permission::ReadPersonal),
            inbox: ctx.can(crate::service::inbox::roles::READ),
            enter: ctx.can(Permission::EnterChange),
            approve: ctx.can(Permission::ApproveChange),
            support: ctx.can(Permission::ManageSupportMeasures),
            audit: ctx.can(Permission::ReadAuditLog),
            aggregates: ctx.can(Permission::ReadAggregates),
            accounts: ctx.can(Permission::ManageAccounts),
            grants: ctx.can(Permission::ManageAccounts) || ctx.can(Permission::ApproveGrant),
            platform: ctx.can(Permission::ManageTenants),
            flash: None,
            counts: ctx.counts,
        }
    }

    pub fn with_flash(mut self, flash: Option<String>) -> Chrome {
        self.flash = flash
            .filter(|f| !f.is_empty())
            .map(|f| f.chars().take(200).collect());
        self
    }
}

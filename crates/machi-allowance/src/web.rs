//! The allowance clerk's pages (server-rendered, Japanese, 和暦) and the
//! JSON API of the allowance system. Staff sign in with their own account
//! of this system (not the registry's; [`crate::accounts`]): a clerk
//! enters claims and reads, a supervisor also approves and exports payment
//! files, manages accounts and reads the access log (roles checked on the
//! server for every route). A session cookie (HttpOnly, SameSite=Strict)
//! and a CSRF token in every form; sign-in throttled by account and
//! source; every personal-data read, claim, payment file and sign-in in
//! the hash-chained access log ([`crate::audit`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use chrono::NaiveDate;
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::error::Localized;
use serde::{Deserialize, Serialize};

use crate::accounts::{self, Role, Throttle};
use crate::audit::{Action, Entry};
use crate::bank::{AccountInput, BankAccount};
use crate::rules::{self, PayRule, YearMonth};
pub use crate::store::PaymentLine;
use crate::store::{ApartChild, ChildRefused, ClaimRow, NewClaim, Store, WorkItem};
use crate::worker::{RegistryClient, Since, is_child};

const COOKIE: &str = "allowance_session";
const SESSION: Duration = Duration::from_secs(8 * 3600);

/// What the pages need.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub client: Arc<RegistryClient>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    throttle: Arc<Throttle>,
    eras: Arc<EraTable>,
    /// "Today" for defaults and the months shown (None: the system clock).
    pub today: Option<NaiveDate>,
    /// This process's key for what a page vouches for in a form of its
    /// own (the day a 納付期限 was checked, [`WebState::vouch_checked`]);
    /// random at start, like the sessions the forms are bound to.
    form_key: Arc<[u8; 32]>,
}

#[derive(Clone)]
pub struct Session {
    login: String,
    name: String,
    role: Role,
    csrf: String,
    until: Instant,
    /// Signed in with a temporary password: only the password page (and
    /// signing out) until a new one is chosen.
    must_change: bool,
}

/// Who is asking: the session (if signed in) and the source address.
pub struct Ctx {
    sess: Option<Session>,
    source: String,
}

impl FromRequestParts<WebState> for Ctx {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, s: &WebState) -> Result<Ctx, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Ctx {
            sess: s.session(&parts.headers),
            source: accounts::source_key(addr),
        })
    }
}

impl Ctx {
    /// An access-log entry by the signed-in account from this source.
    fn entry(&self, sess: &Session, action: Action, subject: impl Into<String>) -> Entry {
        Entry::new(&sess.login, &self.source, action, subject)
    }
}

impl WebState {
    pub fn new(store: Store, client: Arc<RegistryClient>) -> WebState {
        WebState {
            store,
            client,
            sessions: Arc::default(),
            throttle: Arc::default(),
            eras: Arc::new(EraTable::standard()),
            today: None,
            form_key: Arc::new({
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).expect("the operating system's random source");
                k
            }),
        }
    }
    fn today(&self) -> NaiveDate {
        self.today.unwrap_or_else(crate::today_in_japan)
    }

    /// The MAC of a 納付期限 `due_on` checked on `checked_on` for the
    /// notice form `nonce` of claim `claim` in the session `csrf`.
    fn checked_mac(
        &self,
        claim: i64,
        nonce: &str,
        due_on: NaiveDate,
        checked_on: i32,
        csrf: &str,
    ) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac as _;
        let mut m = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.form_key[..])
            .expect("HMAC takes a key of any length");
        m.update(format!("notice-checked/{claim}/{nonce}/{due_on}/{checked_on}/{csrf}").as_bytes());
        m
    }

    /// What a page that checked the 納付期限 `due_on` of notice form
    /// `nonce` today puts in the form it offers next (the counter
    /// hand-over on the refusal page): the day checked and its MAC.
    fn vouch_checked(&self, claim: i64, nonce: &str, due_on: NaiveDate, csrf: &str) -> String {
        use chrono::Datelike as _;
        use hmac::Mac as _;
        let day = self.today().num_days_from_ce();
        let tag = self.checked_mac(claim, nonce, due_on, day, csrf).finalize();
        format!("{day}.{}", hex::encode(tag.into_bytes()))
    }

    /// The day a [`WebState::vouch_checked`] token says the due date was
    /// checked, if it is genuine (this process, this session, this form,
    /// this date) and that day is today or yesterday: one midnight between
    /// the check and the button is allowed, no more.
    fn checked_on(
        &self,
        claim: i64,
        nonce: &str,
        due_on: NaiveDate,
        csrf: &str,
        token: &str,
    ) -> Option<NaiveDate> {
        use hmac::Mac as _;
        let (day, tag) = token.split_once('.')?;
        let day: i32 = day.parse().ok()?;
        let tag = hex::decode(tag).ok()?;
        self.checked_mac(claim, nonce, due_on, day, csrf)
            .verify_slice(&tag)
            .ok()?;
        let on = NaiveDate::from_num_days_from_ce_opt(day)?;
        let today = self.today();
        (on <= today && on + chrono::Days::new(1) >= today).then_some(on)
    }
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie(headers)?;
        let mut s = self.sessions.lock().ok()?;
        s.retain(|_, v| v.until > Instant::now());
        s.get(&token).cloned()
    }
    fn wareki(&self, d: NaiveDate) -> String {
        self.eras.format_wareki(d)
    }
    fn month(&self, m: YearMonth) -> String {
        let s = self.eras.format_wareki(m.first_day());
        s.strip_suffix("1日").unwrap_or(&s).to_string()
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex::encode(b)
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub(crate) fn yen(n: i64) -> String {
    let s = n.abs().to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    format!("{}{o}円", if n < 0 { "-" } else { "" })
}

fn page(title: &str, session: Option<&Session>, body: &str) -> Response {
    let nav = match session {
        Some(s) => format!(
            r#"<nav aria-label="メニュー"><ul><li><a href="/">業務一覧</a></li><li><a href="/claims/new">認定請求の入力</a></li><li><a href="/payments">支払</a></li>{}</ul>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><span id="me">{}（{}）</span> <a href="/password" id="password-link">パスワード変更</a> <button type="submit">ログアウト</button></form></nav>"#,
            if s.role.supervises() {
                r#"<li><a href="/accounts">職員アカウント</a></li><li><a href="/access-log">アクセス記録</a></li>"#
            } else {
                ""
            },
            esc(&s.csrf),
            esc(&s.name),
            s.role.label_ja()
        ),
        None => String::new(),
    };
    let html = format!(
        r##"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t} - 児童手当</title>
<style>
body{{font-family:sans-serif;margin:0;color:#1a1a1a;background:#fff;line-height:1.6}}
header{{background:#0b4f6c;color:#fff;padding:.5rem 1rem}} header a{{color:#fff}}
header nav{{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}} header ul{{list-style:none;display:flex;gap:1rem;margin:0;padding:0}}
main{{padding:1rem;max-width:70rem}}
table{{border-collapse:collapse;margin:.5rem 0}} th,td{{border:1px solid #888;padding:.25rem .5rem;text-align:left;vertical-align:top}}
td.n{{text-align:right;white-space:nowrap}} .nw{{white-space:nowrap}} td.m{{white-space:nowrap}} .err{{color:#a00000;border:2px solid #a00000;padding:.5rem}}
label{{display:block;margin-top:.5rem}} a{{color:#0b4f6c}} :focus{{outline:3px solid #d35400}}
.skip{{position:absolute;left:-999px}} .skip:focus{{left:1rem;top:1rem;background:#fff;color:#000}}
@media (max-width:40rem){{main{{padding:.5rem}} table{{font-size:.875rem}} th,td{{padding:.2rem .3rem}} td.m{{white-space:normal}}}}
.notice .r{{text-align:right}} .notice .amount{{font-size:1.5rem;font-weight:bold}} .notice table{{width:100%}}
@page{{size:A4;margin:18mm 16mm}}
@media print{{header,.skip,.noprint{{display:none !important}} main{{padding:0;max-width:none}} body{{font-size:10pt;line-height:1.45;color:#000}} a{{color:#000;text-decoration:none}} h1{{font-size:15pt;margin:0 0 .4em;text-align:center}} h2{{font-size:13pt;margin:.6em 0 .3em}} h3{{font-size:11pt;margin:.6em 0 .2em}} p,ul{{margin:.3em 0}} .notice .amount{{font-size:14pt}} tr{{break-inside:avoid}}}}
</style></head>
<body><a class="skip" href="#main">本文へ移動</a><header><strong>児童手当システム</strong>{nav}</header>
<main id="main"><h1>{t}</h1>{body}</main></body></html>"##,
        t = esc(title)
    );
    let mut r = Html(html).into_response();
    secure_headers(&mut r);
    r
}

fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

fn error_page(session: Option<&Session>, status: StatusCode, ja: &str, en: &str) -> Response {
    let mut r = page(
        "エラー",
        session,
        &format!(
            r#"<p class="err" role="alert">{}<br lang="en"><span lang="en">{}</span></p><p><a href="/">業務一覧へ戻る</a></p>"#,
            esc(ja),
            esc(en)
        ),
    );
    *r.status_mut() = status;
    r
}

/// A JSON error: `{code, message_ja, message_en}`, and for a body that
/// could not be read the parser's own words (`detail`, English only).
#[derive(Serialize)]
struct ApiError {
    code: &'static str,
    message_ja: String,
    message_en: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn api_error(status: StatusCode, code: &'static str, ja: &str, en: &str) -> Response {
    api_error_with(status, code, ja, en, None)
}

/// [`api_error`] with the parser's own words in `detail`.
fn api_error_with(
    status: StatusCode,
    code: &'static str,
    ja: &str,
    en: &str,
    detail: Option<String>,
) -> Response {
    let mut r = (
        status,
        axum::Json(ApiError {
            code,
            message_ja: ja.into(),
            message_en: en.into(),
            detail,
        }),
    )
        .into_response();
    secure_headers(&mut r);
    r
}

/// The claim a page acts on, or the page that says there is none (404) or
/// that it could not be read.
async fn claim_or_404(
    s: &WebState,
    sess: &Session,
    id: i64,
) -> Result<crate::store::ClaimRow, Response> {
    match s.store.claim(id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(error_page(
            Some(sess),
            StatusCode::NOT_FOUND,
            "その受給者はいません。",
            "No such claim.",
        )),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("allowance: {e}");
    error_page(
        None,
        StatusCode::INTERNAL_SERVER_ERROR,
        "処理できませんでした。時間をおいてもう一度お試しください。",
        "Something went wrong; please try again later.",
    )
}

/// The router.
pub fn app(state: WebState) -> Router {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(home))
        .route("/claims/new", get(claim_form))
        .route("/claims", post(claim_create))
        .route("/claims/{id}", get(claim_page))
        .route("/claims/{id}/children", post(child_add))
        .route("/claims/{id}/support", post(support_set))
        .route("/claims/{id}/children/apart", post(apart_add))
        .route("/claims/{id}/children/end", post(child_end))
        .route("/claims/{id}/repayments", post(repayment_record))
        .route(
            "/claims/{id}/repayments/{repayment}/cancel",
            post(repayment_cancel),
        )
        .route("/claims/{id}/notices", post(notice_issue))
        .route("/claims/{id}/notices/{notice}", get(notice_page))
        .route("/claims/{id}/account", post(account_set))
        .route("/claims/{id}/unpaid", post(unpaid_record))
        .route("/work/{id}/done", post(work_done))
        .route("/payments", get(payments_index))
        .route("/payments/special", get(special_page).post(special_approve))
        .route("/payments/runs/{id}", get(run_page))
        .route("/payments/{month}", get(payment_page).post(payment_approve))
        .route("/accounts", get(accounts_page).post(account_create))
        .route("/accounts/{login}", post(account_update))
        .route("/accounts/{login}/reset", post(account_reset))
        .route("/password", get(password_page).post(password_change))
        .route("/access-log", get(log_page))
        .route("/api/claims", get(api_claims))
        .route("/api/claims/{id}", get(api_claim))
        .route("/api/claims/{id}/children", post(api_apart_add))
        .route("/api/claims/{id}/children/end", post(api_child_end))
        .route("/api/claims/{id}/account", put(api_account_set))
        .route("/api/work-items", get(api_work))
        .route("/api/payments/{month}", get(api_payment))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

// ------------------------------------------------------------------ sign-in

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

async fn login_form() -> Response {
    login_page(None, StatusCode::OK)
}

fn login_page(error: Option<(&str, &str)>, status: StatusCode) -> Response {
    let err = error
        .map(|(ja, en)| {
            format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p>"#,
                esc(ja),
                esc(en)
            )
        })
        .unwrap_or_default();
    let mut r = page(
        "ログイン",
        None,
        &format!(
            r#"{err}<form method="post" action="/login">
<label for="login">ログインID</label><input id="login" name="login" required autocomplete="username">
<label for="password">パスワード</label><input id="password" name="password" type="password" required autocomplete="current-password">
<p><button id="login-submit" type="submit">ログイン</button></p></form>"#
        ),
    );
    *r.status_mut() = status;
    r
}

fn throttled(wait: u64) -> Response {
    let minutes = wait.div_ceil(60);
    let mut r = login_page(
        Some((
            &format!(
                "ログインの失敗が続いたため、しばらく受け付けません。約{minutes}分後にもう一度お試しください。"
            ),
            &format!("Too many failed sign-ins; try again in about {minutes} minutes."),
        )),
        StatusCode::TOO_MANY_REQUESTS,
    );
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Signs in: throttled by source (in memory) and by account and source
/// (in the database), see [`crate::accounts`]; every attempt logged.
async fn login(State(s): State<WebState>, ctx: Ctx, Form(f): Form<LoginForm>) -> Response {
    let login = f.login.trim().to_string();
    let typed: String = login.chars().filter(|c| !c.is_control()).take(40).collect();
    let wrong = || {
        login_page(
            Some((
                "ログインIDまたはパスワードが正しくありません。",
                "The login or password is wrong.",
            )),
            StatusCode::UNAUTHORIZED,
        )
    };
    if login.is_empty() || f.password.is_empty() || login.len() > 40 || f.password.len() > 1024 {
        return wrong();
    }
    let log_as = |action: Action| Entry::new("", &ctx.source, action, format!("login:{typed}"));
    if let Err(wait) = s.throttle.admit(&ctx.source) {
        let _ = s
            .store
            .log(log_as(Action::SignInThrottled).detail("source"))
            .await;
        return throttled(wait);
    }
    let now = chrono::Utc::now().timestamp();
    let attempt = match s.store.admit_login(&login, &ctx.source, now).await {
        Ok(Ok(id)) => id,
        Ok(Err(wait)) => {
            s.throttle.release(&ctx.source);
            let _ = s
                .store
                .log(log_as(Action::SignInThrottled).detail("account"))
                .await;
            return throttled(wait);
        }
        Err(e) => return internal(e),
    };
    let found = match s.store.account(&login).await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let hash = found
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| accounts::dummy_hash().to_string());
    let right = s.throttle.check(&f.password, &hash).await;
    let account = match found {
        Some((a, _)) if right && !a.disabled => a,
        _ => {
            if let Err(e) = s.store.log(log_as(Action::SignInFailed)).await {
                return internal(e);
            }
            return wrong();
        }
    };
    s.throttle.proven(&ctx.source);
    if let Err(e) = s.store.take_back_login(attempt).await {
        return internal(e);
    }
    if let Err(e) = s
        .store
        .log(Entry::new(
            &account.login,
            &ctx.source,
            Action::SignIn,
            format!("account:{}", account.login),
        ))
        .await
    {
        return internal(e);
    }
    let token = random_hex();
    if let Ok(mut m) = s.sessions.lock() {
        m.insert(
            token.clone(),
            Session {
                login: account.login,
                name: account.display_name,
                role: account.role,
                csrf: random_hex(),
                until: Instant::now() + SESSION,
                must_change: account.must_change,
            },
        );
    }
    let mut r = Redirect::to(if account.must_change {
        "/password"
    } else {
        "/"
    })
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION.as_secs()
        ))
        .expect("ascii cookie"),
    );
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(s): State<WebState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let (Some(tok), Some(sess)) = (cookie(&headers), ctx.sess.as_ref())
        && sess.csrf == f.csrf
    {
        if let Ok(mut m) = s.sessions.lock() {
            m.remove(&tok);
        }
        let _ = s
            .store
            .log(ctx.entry(sess, Action::SignOut, format!("account:{}", sess.login)))
            .await;
    }
    Redirect::to("/login").into_response()
}

/// The session, or the sign-in page.
macro_rules! signed_in {
    ($ctx:expr) => {
        match $ctx.sess.clone() {
            Some(x) if x.must_change => return Redirect::to("/password").into_response(),
            Some(x) => x,
            None => return Redirect::to("/login").into_response(),
        }
    };
}

/// The session of a supervisor, or a 403 page (the role is checked here,
/// on the server, whatever the menu shows).
macro_rules! supervisor {
    ($ctx:expr) => {{
        let sess = signed_in!($ctx);
        if !sess.role.supervises() {
            return error_page(
                Some(&sess),
                StatusCode::FORBIDDEN,
                "この操作は児童手当監督者だけができます。",
                "Only an allowance supervisor may do this.",
            );
        }
        sess
    }};
}

/// The session of a form post with its CSRF token, or an error page.
macro_rules! posted {
    ($ctx:expr, $csrf:expr) => {{
        let sess = signed_in!($ctx);
        if sess.csrf != $csrf {
            return error_page(
                Some(&sess),
                StatusCode::FORBIDDEN,
                "画面の有効期限が切れました。もう一度操作してください。",
                "The form expired; please try again.",
            );
        }
        sess
    }};
}

/// Logs a read before showing it; an error page if the log cannot be
/// written (nothing is shown unlogged).
macro_rules! logged {
    ($s:expr, $entry:expr) => {
        if let Err(e) = $s.store.log($entry).await {
            return internal(e);
        }
    };
}
// ------------------------------------------------------------------ pages

async fn home(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = signed_in!(ctx);
    let (work, claims) = match (s.store.work_items(true).await, s.store.claims().await) {
        (Ok(w), Ok(c)) => (w, c),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    logged!(
        s,
        ctx.entry(&sess, Action::ListRead, "list:home")
            .detail(format!("業務{}件・受給者{}件", work.len(), claims.len()))
    );
    let mut b = String::new();
    b.push_str(r#"<h2 id="work">未処理の業務</h2>"#);
    if work.is_empty() {
        b.push_str("<p>未処理の業務はありません。</p>");
    } else {
        b.push_str(r#"<table aria-labelledby="work"><thead><tr><th scope="col">内容</th><th scope="col">対象者</th><th scope="col">異動日・受付日</th><th scope="col">操作</th></tr></thead><tbody>"#);
        for w in &work {
            let _ = write!(
                b,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(w.kind.label_ja()),
                match (&w.filing, w.amount) {
                    (Some((_, receipt)), _) => format!("（受付番号 {}）", esc(receipt)),
                    (None, Some(a)) => format!("（{}）", yen(a)),
                    (None, None) => String::new(),
                },
                esc(&w.person_name),
                w.event_on.map(|d| s.wareki(d)).unwrap_or_default(),
                work_actions(&sess, w)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str(r#"<h2 id="claims">受給者</h2>"#);
    if claims.is_empty() {
        b.push_str("<p>受給者はまだいません。</p>");
    } else {
        b.push_str(r#"<table aria-labelledby="claims"><thead><tr><th scope="col">受給者</th><th scope="col">請求日</th><th scope="col">児童</th><th scope="col">状態</th></tr></thead><tbody>"#);
        for c in &claims {
            let _ = write!(
                b,
                r#"<tr><td><a href="/claims/{}">{}</a></td><td>{}</td><td>{}人</td><td>{}</td></tr>"#,
                c.id,
                esc(&c.claimant_name),
                s.wareki(c.claimed_on),
                // A child with a planned move-out still counts until then.
                c.children
                    .iter()
                    .filter(|x| x.left_on.is_none_or(|l| l >= s.today()))
                    .count(),
                esc(&status_ja(&s, c))
            );
        }
        b.push_str("</tbody></table>");
    }
    page("業務一覧", Some(&sess), &b)
}

fn status_ja(s: &WebState, c: &ClaimRow) -> String {
    let mut t = match c.ended_on {
        Some(d) => format!(
            "消滅（{}・{}分まで）",
            c.end_reason.as_deref().unwrap_or("事由"),
            s.month(YearMonth::of(d))
        ),
        None => "支給中".to_string(),
    };
    if c.public_servant {
        t.push_str("・公務員（所属庁が支給）");
    }
    t
}

fn work_actions(sess: &Session, w: &WorkItem) -> String {
    use crate::store::WorkKind::*;
    let link = match (w.kind, w.claim_id) {
        // A child born into, or moved into, a claimant's household: an
        // increase of that claim.
        (BirthIncrease | MoveInClaim | ChildJoined, Some(c)) => format!(
            r##"<a href="/claims/{c}?work={}#increase">額改定請求を入力</a> "##,
            w.id
        ),
        (BirthClaim | MoveInClaim | OnlineClaim, _) => {
            format!(r#"<a href="/claims/new?work={}">認定請求を入力</a> "#, w.id)
        }
        (_, Some(c)) => format!(r#"<a href="/claims/{c}">受給者を表示</a> "#),
        _ => String::new(),
    };
    format!(
        r#"{link}<form method="post" action="/work/{}/done" style="display:inline"><input type="hidden" name="csrf" value="{}"><button type="submit">処理済みにする</button></form>"#,
        w.id,
        esc(&sess.csrf)
    )
}

async fn work_done(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    match s
        .store
        .close_work_item(id, ctx.entry(&sess, Action::WorkDone, format!("work:{id}")))
        .await
    {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct ClaimQuery {
    work: Option<i64>,
}

/// What the claim form shows about the work item it came from.
async fn about_work(s: &WebState, work: Option<i64>) -> Result<Option<WorkItem>, Response> {
    match work {
        Some(id) => s.store.work_item(id).await.map_err(internal),
        None => Ok(None),
    }
}

/// The claimant's name as the registry shows it (empty if unknown).
async fn name_of(s: &WebState, addressee: &str) -> String {
    match s.client.resident(addressee.trim()).await {
        Ok(Some(p)) => p.name,
        _ => String::new(),
    }
}

async fn claim_form(State(s): State<WebState>, ctx: Ctx, Query(q): Query<ClaimQuery>) -> Response {
    let sess = signed_in!(ctx);
    let work = match about_work(&s, q.work).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut claimant = String::new();
    let mut claimed_on = s.today();
    let mut filed = Vec::new();
    let mut account = AccountFields::default();
    let mut children_elsewhere = false;
    match &work {
        // Filed online: the claimant the registry's clerk matched, the
        // day the filing was received as 請求日, and what was filed.
        Some(w) if w.kind == crate::store::WorkKind::OnlineClaim => {
            claimant = w.person.clone();
            if let Some(d) = w.event_on {
                claimed_on = d;
            }
            if let Some((id, _)) = &w.filing {
                logged!(
                    s,
                    ctx.entry(&sess, Action::PersonRead, format!("filing:{id}"))
                );
                filed = filed_answers(&s, *id).await;
                // The account and the children as filed: the clerk
                // confirms, never retypes.
                account = AccountFields::filed(&filed);
                children_elsewhere = filed_children(&s.eras, &filed)
                    .iter()
                    .any(|c| c.lives_with == Some(false));
            }
        }
        // The household head is the usual claimant; the clerk may name
        // another member.
        Some(w) => {
            if let Ok(Some((head, _))) = s.client.household(&w.household).await {
                claimant = head.unwrap_or_default();
            }
        }
        None => {}
    }
    if !claimant.is_empty() {
        logged!(
            s,
            ctx.entry(&sess, Action::PersonRead, format!("person:{claimant}"))
        );
    }
    let view = ClaimFormView {
        claimant_name: name_of(&s, &claimant).await,
        claimant,
        claimed_on: s.wareki(claimed_on),
        event_on: work
            .as_ref()
            .filter(|w| w.kind != crate::store::WorkKind::OnlineClaim)
            .and_then(|w| w.event_on)
            .map(|d| s.wareki(d))
            .unwrap_or_default(),
        public_servant: false,
        children_elsewhere,
        event_confirmed: false,
        account,
        work,
        filed,
    };
    claim_form_page(&sess, &view, None)
}

/// The claim form's values.
struct ClaimFormView {
    work: Option<WorkItem>,
    claimant: String,
    claimant_name: String,
    claimed_on: String,
    event_on: String,
    public_servant: bool,
    children_elsewhere: bool,
    event_confirmed: bool,
    account: AccountFields,
    /// What the citizen filed online (labels and values, as the
    /// registry's inbox shows them), for the clerk to check.
    filed: Vec<(String, Vec<String>)>,
}

/// The 振込先口座 fields of a form, as typed (or prefilled).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountFields {
    #[serde(default)]
    pub bank_code: String,
    #[serde(default)]
    pub branch_code: String,
    #[serde(default)]
    pub account_kind: String,
    #[serde(default)]
    pub account_number: String,
    #[serde(default)]
    pub account_holder: String,
}

impl AccountFields {
    fn input(&self) -> AccountInput<'_> {
        AccountInput {
            bank: &self.bank_code,
            branch: &self.branch_code,
            kind: &self.account_kind,
            number: &self.account_number,
            holder: &self.account_holder,
        }
    }
    fn of(a: &BankAccount) -> AccountFields {
        AccountFields {
            bank_code: a.bank.clone(),
            branch_code: a.branch.clone(),
            account_kind: a.kind.code().to_string(),
            account_number: a.number.clone(),
            account_holder: a.holder.clone(),
        }
    }
    /// The account as filed online: the 児童手当認定請求 asks for the
    /// bank's and branch's names (shown in 電子申請の内容; the clerk
    /// looks up their codes), an ordinary account's number and the
    /// holder in katakana.
    fn filed(filed: &[(String, Vec<String>)]) -> AccountFields {
        let value = |prefix: &str| {
            filed
                .iter()
                .find(|(l, _)| l.starts_with(prefix))
                .and_then(|(_, v)| v.first().cloned())
                .unwrap_or_default()
        };
        let number = value("口座番号");
        AccountFields {
            account_kind: if number.is_empty() {
                String::new()
            } else {
                "ordinary".into()
            },
            // A number filed without its leading zeros (a number field).
            account_number: if !number.is_empty()
                && number.len() < 7
                && number.chars().all(|c| c.is_ascii_digit())
            {
                format!("{number:0>7}")
            } else {
                number
            },
            account_holder: value("口座名義"),
            ..AccountFields::default()
        }
    }
    /// The account checked (None: nothing typed).
    fn parse(&self) -> Result<Option<BankAccount>, (String, String)> {
        self.check().map_err(|e| (e.ja, e.en))
    }
    /// [`AccountFields::parse`] with the refusal's code.
    fn check(&self) -> Result<Option<BankAccount>, crate::bank::AccountError> {
        let i = self.input();
        if i.is_empty() {
            return Ok(None);
        }
        BankAccount::check(&i).map(Some)
    }
}

/// The account fields of a form (claim entry, or a change on the claim's
/// page).
fn account_inputs(a: &AccountFields) -> String {
    let kind = if a.account_kind.is_empty() {
        "ordinary"
    } else {
        a.account_kind.as_str()
    };
    format!(
        r#"<fieldset id="bank-account"><legend>振込先口座</legend>
<label for="bank_code">金融機関コード（4桁）</label><input id="bank_code" name="bank_code" value="{b}" inputmode="numeric" maxlength="4" autocomplete="off">
<label for="branch_code">支店コード（3桁）</label><input id="branch_code" name="branch_code" value="{br}" inputmode="numeric" maxlength="3" autocomplete="off">
<fieldset><legend>預金種目</legend><label><input type="radio" name="account_kind" value="ordinary" id="account_ordinary"{o}> 普通</label>
<label><input type="radio" name="account_kind" value="current" id="account_current"{c}> 当座</label></fieldset>
<label for="account_number">口座番号（7桁）</label><input id="account_number" name="account_number" value="{n}" inputmode="numeric" maxlength="7" autocomplete="off">
<label for="account_holder">口座名義（カタカナ。ひらがなで入力してもカタカナにします）</label><input id="account_holder" name="account_holder" value="{h}" autocomplete="off">
</fieldset>"#,
        b = esc(&a.bank_code),
        br = esc(&a.branch_code),
        o = if kind == "ordinary" { " checked" } else { "" },
        c = if kind == "current" { " checked" } else { "" },
        n = esc(&a.account_number),
        h = esc(&a.account_holder),
    )
}

/// A child as filed online (お子さん: 氏名・生年月日・同居).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledChild {
    pub name: String,
    pub birth: Option<NaiveDate>,
    /// 同居していますか (None: not answered).
    pub lives_with: Option<bool>,
}

/// The children of a filed 児童手当認定請求, read from its answers as the
/// registry's inbox gives them: one value per child, 「氏名・生年月日・
/// はい／いいえ」 (the name may itself hold a ・, so the parts are read
/// from the end).
pub fn filed_children(eras: &EraTable, filed: &[(String, Vec<String>)]) -> Vec<FiledChild> {
    let Some((_, values)) = filed.iter().find(|(l, _)| l == "お子さん") else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|v| {
            let mut parts: Vec<&str> = v.split('・').collect();
            let lives_with = match parts.last().copied() {
                Some("はい") => {
                    parts.pop();
                    Some(true)
                }
                Some("いいえ") => {
                    parts.pop();
                    Some(false)
                }
                _ => None,
            };
            let birth = parts
                .last()
                .and_then(|p| parse_date(eras, p).ok().flatten());
            if birth.is_some() {
                parts.pop();
            }
            let name = parts.join("・");
            (!name.trim().is_empty()).then(|| FiledChild {
                name: name.trim().to_string(),
                birth,
                lives_with,
            })
        })
        .collect()
}

/// The answers of online filing `id` as the registry's API gives them
/// (labels and values); none when it cannot be read. The caller logs the
/// read.
async fn filed_answers(s: &WebState, id: i64) -> Vec<(String, Vec<String>)> {
    let Ok(Some(f)) = s.client.filing(id).await else {
        return Vec::new();
    };
    f["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["label"].as_str().unwrap_or_default().to_string(),
                        i["values"]
                            .as_array()
                            .map(|v| {
                                v.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn claim_form_page(sess: &Session, v: &ClaimFormView, error: Option<(&str, &str)>) -> Response {
    let err = error
        .map(|(ja, en)| {
            format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p>"#,
                esc(ja),
                esc(en)
            )
        })
        .unwrap_or_default();
    let mut about = v
        .work
        .as_ref()
        .map(|w| {
            format!(
                "<p>{}（{}{}）</p>",
                esc(w.kind.label_ja()),
                esc(&w.person_name),
                w.filing
                    .as_ref()
                    .map(|(_, r)| format!("、受付番号 {}", esc(r)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    if !v.filed.is_empty() {
        about.push_str(r#"<h2 id="filed">電子申請の内容</h2><dl id="filed-answers">"#);
        for (label, values) in &v.filed {
            let _ = write!(
                about,
                "<dt>{}</dt><dd>{}</dd>",
                esc(label),
                values
                    .iter()
                    .map(|x| esc(x))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        about.push_str("</dl><p>請求日は申請を受け付けた日です。お子さんは請求日の住民記録の世帯から読み込みます。加入している年金が共済組合で公務員の方は、所属庁から支給されます。</p>");
    }
    let name = if v.claimant_name.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p id="claimant-name">請求者：{}</p>"#,
            esc(&v.claimant_name)
        )
    };
    let mut r = page(
        "認定請求の入力",
        Some(sess),
        &format!(
            r#"{err}{about}<form method="post" action="/claims"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="work" value="{work}">
<label for="claimant">請求者の宛名番号</label><input id="claimant" name="claimant" value="{c}" required inputmode="numeric" aria-describedby="claimant-help"><span id="claimant-help">世帯の児童（続柄が子）は、請求日に世帯にいた児童を住民記録から読み込みます。</span>{name}
<label for="claimed_on">請求日（和暦または西暦）</label><input id="claimed_on" name="claimed_on" value="{d}" required>
<label for="event_on">出生日・転入日（15日特例、該当する場合）</label><input id="event_on" name="event_on" value="{e}" aria-describedby="event-help"><span id="event-help">住民記録の出生日・転入日と照合します。</span>
<label><input type="checkbox" name="event_confirmed" value="1" id="event_confirmed"{ec}> 住民記録にない日付であることを確認した（災害などやむを得ない理由の日、別居の子の出生日など）</label>
<label><input type="checkbox" name="public_servant" value="1" id="public_servant"{ps}> 公務員（所属庁から支給）</label>
<label><input type="checkbox" name="children_elsewhere" value="1" id="children_elsewhere"{ce}> 児童は別居している（登録後、受給者の画面で別居監護の児童を追加します）</label>
{account}<p>振込先口座のない受給者には支払ができません（支払ファイルに入れず、口座の登録まで支払を保留します）。後から受給者の画面でも登録できます。</p>
<p><button type="submit" id="claim-submit">登録する</button></p></form>"#,
            csrf = esc(&sess.csrf),
            work = v
                .work
                .as_ref()
                .map(|w| w.id.to_string())
                .unwrap_or_default(),
            c = esc(&v.claimant),
            d = esc(&v.claimed_on),
            e = esc(&v.event_on),
            ps = if v.public_servant { " checked" } else { "" },
            ce = if v.children_elsewhere { " checked" } else { "" },
            ec = if v.event_confirmed { " checked" } else { "" },
            account = account_inputs(&v.account),
        ),
    );
    if error.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

#[derive(Deserialize)]
struct ClaimForm {
    csrf: String,
    claimant: String,
    claimed_on: String,
    #[serde(default)]
    event_on: String,
    #[serde(default)]
    public_servant: Option<String>,
    /// The children live elsewhere (added on the claim's page).
    #[serde(default)]
    children_elsewhere: Option<String>,
    /// The work item the form came from (empty: none).
    #[serde(default)]
    work: String,
    #[serde(default)]
    event_confirmed: Option<String>,
    #[serde(flatten)]
    account: AccountFields,
}

fn parse_date(eras: &EraTable, input: &str) -> Result<Option<NaiveDate>, (String, String)> {
    let t = input.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match DateValue::parse(t, eras, DatePolicy::CalendarOnly) {
        Ok(v) => Ok(v.as_calendar()),
        Err(e) => Err((e.message_ja(), e.message_en())),
    }
}

/// A required date field (和暦 or 西暦) named `label_ja` / `label_en`:
/// the date, or a typed refusal naming the field — `missing_date` when
/// nothing was typed, `invalid_date` (with the reason) when it cannot be
/// read. Range checks (future, before the claim …) are the caller's.
fn required_date(
    eras: &EraTable,
    input: &str,
    label_ja: &str,
    label_en: &str,
) -> Result<NaiveDate, Refusal> {
    match parse_date(eras, input) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(invalid(
            "missing_date",
            &format!("{label_ja}を入力してください。"),
            &format!("Enter the {label_en}."),
        )),
        Err((ja, en)) => Err(invalid(
            "invalid_date",
            &format!("{label_ja}：{ja}"),
            &format!("{label_en}: {en}"),
        )),
    }
}

/// Enters a claim: the claimant and their household's children as the
/// registry shows them on the 請求日 (logged as entered by `clerk`, not over the
/// network; the pages use [`enter_claim_from`]).
pub async fn enter_claim(
    s: &WebState,
    clerk: &str,
    claimant: &str,
    claimed_on: NaiveDate,
    event_on: Option<NaiveDate>,
    public_servant: bool,
) -> Result<i64, (String, String)> {
    enter_claim_from(
        s,
        clerk,
        "",
        claimant,
        claimed_on,
        event_on,
        public_servant,
        false,
        Extra::default(),
    )
    .await
}

/// The refusal when the registry hides the claimant or their household
/// from this system (支援措置, j440): nothing is entered on a guess.
pub const HIDDEN_JA: &str = "支援措置のため、住民記録システムからこの方の世帯を確認できません。窓口でご本人に世帯と児童の状況を確認し、住民記録の支援措置担当と連絡を取ってください。";
/// [`HIDDEN_JA`] in English.
pub const HIDDEN_EN: &str = "A support measure keeps this person's household from this system. Confirm the household and the children with the person at the counter and contact the registry's support-measure officer.";

/// What a claim form may give besides the claimant and the dates.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// 振込先口座 (None: not given yet: held out of payment files).
    pub account: Option<BankAccount>,
    /// The online filing the claim is entered from.
    pub filing: Option<i64>,
    /// The clerk confirmed a 出生日・転入日 the registry does not know
    /// (a disaster or another unavoidable reason, 児童手当法第8条第3項; a
    /// child born or moved in elsewhere).
    pub event_confirmed: bool,
}

/// [`enter_claim`] by `clerk` from `source`; the claim and its access-log
/// entry are one transaction.
/// `children_elsewhere`: the claimant's children live elsewhere (別居監護,
/// 児童手当法第4条第1項第1号): the claim is entered without a child of the
/// household and the clerk adds them on the claim's page; it is worth
/// nothing until they are.
///
/// A claim entered late (its 請求日 in the past) is made as it would have
/// been on the 請求日 (児童手当法第7条, 第8条第2項): the claimant must have
/// been a resident then, and the children are those of their household
/// on that day (`?as_of=` of the registry's API). What the registry's
/// changes since did to them is applied as the worker applies it to a
/// running claim ([`crate::worker::departure_effects`],
/// [`crate::worker::check_effect`]): a child who died or moved out is
/// counted through that month; one who went to another household raises
/// a check. A child who joined the household after the 請求日 is not on
/// the claim: a work item for the 額改定請求 (第9条第1項) is raised.
#[allow(clippy::too_many_arguments)]
pub async fn enter_claim_from(
    s: &WebState,
    clerk: &str,
    source: &str,
    claimant: &str,
    claimed_on: NaiveDate,
    event_on: Option<NaiveDate>,
    public_servant: bool,
    children_elsewhere: bool,
    extra: Extra,
) -> Result<i64, (String, String)> {
    let a = claimant.trim();
    let unreachable = |e: crate::worker::LinkError| {
        (
            "住民記録システムに接続できません。".to_string(),
            e.to_string(),
        )
    };
    let hidden = || (HIDDEN_JA.to_string(), HIDDEN_EN.to_string());
    let p = match s.client.resident(a).await.map_err(unreachable)? {
        Some(p) if p.resident => p,
        Some(_) => {
            return Err((
                "その宛名番号の住民は見つかりません。".to_string(),
                "No resident has that addressee number.".to_string(),
            ));
        }
        None => {
            return Err(
                match s.client.resident_lookup(a).await.map_err(unreachable)? {
                    crate::worker::Lookup::Hidden => hidden(),
                    _ => (
                        "その宛名番号の住民は見つかりません。".to_string(),
                        "No resident has that addressee number.".to_string(),
                    ),
                },
            );
        }
    };
    if event_on.is_some_and(|e| e > claimed_on) {
        return Err((
            "出生日・転入日が請求日より後です。".into(),
            "The birth or move-in date is after the claim date.".into(),
        ));
    }
    if claimed_on > s.today() {
        return Err((
            "請求日が未来の日付です。".into(),
            "The claim date is in the future.".into(),
        ));
    }
    if let Ok(open) = s.store.claims_of_person(a).await
        && !open.is_empty()
    {
        return Err((
            "この方はすでに受給者です。".into(),
            "This person already receives the allowance.".into(),
        ));
    }
    // The claimant and their household on the 請求日.
    let then = s
        .client
        .resident_as_of(a, Some(claimed_on))
        .await
        .map_err(unreachable)?
        .filter(|t| t.resident)
        .ok_or_else(|| {
            (
                "請求日に、その方は住民ではありませんでした。".to_string(),
                "That person was not a resident on the claim date.".to_string(),
            )
        })?;
    let members = match s
        .client
        .household_as_of(&then.household, Some(claimed_on))
        .await
        .map_err(unreachable)?
    {
        Some((_, m)) => m,
        // A household a support measure covers (j440) is not shown: its
        // children cannot be read, so nothing is entered on a guess.
        None if s
            .client
            .household_hidden(&then.household, Some(claimed_on))
            .await
            .map_err(unreachable)? =>
        {
            return Err(hidden());
        }
        None => Vec::new(),
    };
    let children: Vec<(String, String, NaiveDate)> = members
        .iter()
        .filter(|m| m.resident && m.addressee_number != a && is_child(m, claimed_on))
        // A child born after the claim date comes by a 額改定請求.
        .filter(|m| m.birth.is_some_and(|b| b <= claimed_on))
        .filter_map(|m| Some((m.addressee_number.clone(), m.name.clone(), m.birth?)))
        .collect();
    if !children_elsewhere
        && !children
            .iter()
            .any(|c| rules::child_until(c.2) >= claimed_on)
    {
        return Err((
            "世帯に18歳年度末までの児童がいません。児童が別居している場合は「児童は別居している」を選んで登録し、受給者の画面で別居監護の児童を追加してください。".into(),
            "The household has no child up to the fiscal year of 18. If the children live elsewhere, tick \"the children live elsewhere\", then add them on the claim's page.".into(),
        ));
    }
    // The 15-day rule's date (児童手当法第8条第3項) is the day of a birth
    // or a move-in: checked against what the registry knows of the
    // claimant and the children.
    let mut event_note = String::new();
    if let Some(ev) = event_on {
        let mut known: Vec<(NaiveDate, String)> = Vec::new();
        for c in &children {
            known.push((c.2, format!("{}の出生日", c.1)));
        }
        let mut whose: Vec<(String, String)> = vec![(a.to_string(), p.name.clone())];
        whose.extend(children.iter().map(|c| (c.0.clone(), c.1.clone())));
        for (who, name) in whose {
            if let Some((_, history)) = s
                .client
                .resident_history(&who, None)
                .await
                .map_err(unreachable)?
            {
                for row in history {
                    if matches!(row.reason.as_str(), "move_in" | "move_in_from_abroad")
                        && let Some(d) = row.effective_on
                    {
                        known.push((d, format!("{name}の転入日")));
                    }
                }
            }
        }
        if !known.iter().any(|k| k.0 == ev) {
            if !extra.event_confirmed {
                known.sort();
                known.dedup();
                let listed_ja = if known.is_empty() {
                    "住民記録には、請求者と世帯の児童の出生日・転入日がありません。".to_string()
                } else {
                    format!(
                        "住民記録にある日付：{}。",
                        known
                            .iter()
                            .map(|(d, what)| format!("{what} {}", s.wareki(*d)))
                            .collect::<Vec<_>>()
                            .join("、")
                    )
                };
                let listed_en = if known.is_empty() {
                    "The registry has no birth or move-in date of the claimant or the household's children.".to_string()
                } else {
                    format!(
                        "The registry has: {}.",
                        known
                            .iter()
                            .map(|(d, _)| d.format("%-d %B %Y").to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err((
                    format!(
                        "出生日・転入日（{}）が住民記録のどの出生日・転入日とも一致しません。{listed_ja}日付を直してください。災害などやむを得ない理由の日や、別居の子の出生日など住民記録にない日であれば、「住民記録にない日付であることを確認した」を選んでください。",
                        s.wareki(ev)
                    ),
                    format!(
                        "The birth or move-in date ({}) matches no birth or move-in date in the registry. {listed_en} Correct the date; if it is a day the registry does not know (a disaster or another unavoidable reason, the birth of a child living elsewhere), tick \"confirmed: a date the registry does not know\".",
                        ev.format("%-d %B %Y")
                    ),
                ));
            }
            event_note = format!(
                "・15日特例の日付 {} は住民記録になく職員が確認",
                s.wareki(ev)
            );
        }
    }
    // What became of each of them since, and who joined the household
    // after the 請求日.
    let mut since = Vec::new();
    for c in &children {
        let f = s
            .client
            .since(&c.0, &then.household, &p.household, claimed_on)
            .await
            .map_err(unreachable)?;
        since.push((c.0.clone(), f));
    }
    let today = s.today();
    let mut joined = Vec::new();
    if claimed_on < today {
        let now = s
            .client
            .household(&p.household)
            .await
            .map_err(unreachable)?
            .map(|(_, m)| m)
            .unwrap_or_default();
        for m in now.iter().filter(|m| {
            m.resident
                && m.addressee_number != a
                && is_child(m, today)
                && !members
                    .iter()
                    .any(|x| x.addressee_number == m.addressee_number)
        }) {
            if let Some(row) = s
                .client
                .joined(&m.addressee_number, &p.household, claimed_on)
                .await
                .map_err(unreachable)?
            {
                joined.push((m.clone(), row));
            }
        }
    }
    let then_effects = move |c: &crate::store::ClaimRow| {
        let mut out = Vec::new();
        for (child, f) in &since {
            match f {
                Since::Stayed => {}
                Since::Left {
                    day,
                    label,
                    change,
                    back,
                } => {
                    out.extend(crate::worker::departure_effects(
                        c, child, *day, label, *change,
                    ));
                    // Back in the household since: counted again only
                    // from a new 額改定請求 (第9条第1項), never for the
                    // months away; the work the worker raises for a
                    // move-in into a claimant's household.
                    if let Some(row) = back {
                        out.push(crate::store::Effect::Work {
                            kind: match row.reason.as_str() {
                                "move_in" | "move_in_from_abroad" => {
                                    crate::store::WorkKind::MoveInClaim
                                }
                                _ => crate::store::WorkKind::ChildJoined,
                            },
                            person: child.clone(),
                            person_name: row.person.name.clone(),
                            household: c.household.clone(),
                            event_on: row.effective_on,
                            claim_id: Some(c.id),
                        });
                    }
                }
                Since::Hidden => {
                    let name = c
                        .children
                        .iter()
                        .find(|x| x.child == *child)
                        .map(|x| x.name.clone())
                        .unwrap_or_default();
                    out.push(crate::store::Effect::Work {
                        kind: crate::store::WorkKind::RecordHidden,
                        person: child.clone(),
                        person_name: name,
                        household: c.household.clone(),
                        event_on: None,
                        claim_id: Some(c.id),
                    });
                }
                Since::Other { reason, on } => {
                    let name = c
                        .children
                        .iter()
                        .find(|x| x.child == *child)
                        .map(|x| x.name.clone())
                        .unwrap_or_default();
                    out.push(crate::worker::check_effect(c, child, name, reason, *on));
                }
            }
        }
        for (m, row) in &joined {
            // The work the worker raises for a birth or a move-in into a
            // claimant's household; for a change of household, one for a
            // child who joined.
            let kind = match row.reason.as_str() {
                "birth" => crate::store::WorkKind::BirthIncrease,
                "move_in" | "move_in_from_abroad" => crate::store::WorkKind::MoveInClaim,
                _ => crate::store::WorkKind::ChildJoined,
            };
            out.push(crate::store::Effect::Work {
                kind,
                person: m.addressee_number.clone(),
                person_name: m.name.clone(),
                household: c.household.clone(),
                event_on: row.effective_on,
                claim_id: Some(c.id),
            });
        }
        out
    };
    let log = Entry::new(clerk, source, Action::ClaimEntered, "")
        .detail(format!("児童{}人{event_note}", children.len()));
    s.store
        .add_claim_then(
            NewClaim {
                claimant: a.to_string(),
                claimant_name: p.name,
                household: p.household,
                claimed_on,
                event_on,
                public_servant,
                children,
                entered_by: clerk.to_string(),
                account: extra.account,
                filing: extra.filing,
            },
            log,
            then_effects,
        )
        .await
        .map_err(|e| ("登録できませんでした。".to_string(), e.to_string()))
}

async fn claim_create(State(s): State<WebState>, ctx: Ctx, Form(f): Form<ClaimForm>) -> Response {
    let sess = posted!(ctx, f.csrf);
    let work = match about_work(&s, f.work.trim().parse().ok()).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let claimant_name = name_of(&s, &f.claimant).await;
    if !claimant_name.is_empty() {
        logged!(
            s,
            ctx.entry(
                &sess,
                Action::PersonRead,
                format!("person:{}", f.claimant.trim())
            )
        );
    }
    let mut view = ClaimFormView {
        work,
        claimant: f.claimant.clone(),
        claimant_name,
        claimed_on: f.claimed_on.clone(),
        event_on: f.event_on.clone(),
        public_servant: f.public_servant.is_some(),
        children_elsewhere: f.children_elsewhere.is_some(),
        event_confirmed: f.event_confirmed.is_some(),
        account: f.account.clone(),
        filed: Vec::new(),
    };
    // An online claim's error page shows what was filed again.
    if let Some((id, _)) = view
        .work
        .as_ref()
        .filter(|w| w.kind == crate::store::WorkKind::OnlineClaim)
        .and_then(|w| w.filing.clone())
    {
        logged!(
            s,
            ctx.entry(&sess, Action::PersonRead, format!("filing:{id}"))
        );
        view.filed = filed_answers(&s, id).await;
    }
    let again = |ja: &str, en: &str| claim_form_page(&sess, &view, Some((ja, en)));
    let claimed_on = match required_date(&s.eras, &f.claimed_on, "請求日", "claim date") {
        Ok(d) => d,
        Err(r) => return again(&r.ja, &r.en),
    };
    let event_on = match parse_date(&s.eras, &f.event_on) {
        Ok(d) => d,
        Err((ja, en)) => {
            return again(
                &format!("出生日・転入日：{ja}"),
                &format!("birth or move-in date: {en}"),
            );
        }
    };
    let account = match f.account.parse() {
        Ok(a) => a,
        Err((ja, en)) => return again(&ja, &en),
    };
    let filing = view
        .work
        .as_ref()
        .filter(|w| w.kind == crate::store::WorkKind::OnlineClaim)
        .and_then(|w| w.filing.as_ref().map(|f| f.0));
    match enter_claim_from(
        &s,
        &sess.login,
        &ctx.source,
        &f.claimant,
        claimed_on,
        event_on,
        f.public_servant.is_some(),
        f.children_elsewhere.is_some(),
        Extra {
            account,
            filing,
            event_confirmed: f.event_confirmed.is_some(),
        },
    )
    .await
    {
        Ok(id) => Redirect::to(&format!("/claims/{id}")).into_response(),
        Err((ja, en)) => again(&ja, &en),
    }
}

/// The months shown on a claim page and in its JSON: from the claim's first
/// month to 12 months after today (or its end).
fn shown_months(s: &WebState, c: &ClaimRow) -> Vec<rules::Month> {
    let r = c.rules();
    let from = r.from.max(rules::RULES_FROM);
    let mut to = YearMonth::of(s.today()).plus(12);
    if let Some(end) = c.ended_on {
        to = to.min(YearMonth::of(end));
    }
    rules::months(&r, from, to)
}

async fn claim_page(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<ClaimQuery>,
) -> Response {
    let sess = signed_in!(ctx);
    let c = match claim_or_404(&s, &sess, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    logged!(
        s,
        ctx.entry(&sess, Action::ClaimRead, format!("claim:{id}"))
    );
    // Per month: the pay rule and file of its first payment, and what
    // every payment of it (a later difference included) came to.
    let paid: HashMap<YearMonth, (Vec<PayRule>, i64, i64)> = match s.store.paid_months(id).await {
        Ok(p) => {
            let mut out: HashMap<YearMonth, (Vec<PayRule>, i64, i64)> = HashMap::new();
            for (m, amount, r, run) in p {
                let e = out.entry(m).or_insert((Vec::new(), run, 0));
                if !e.0.contains(&r) {
                    e.0.push(r);
                }
                e.2 += amount;
            }
            out
        }
        Err(e) => return internal(e),
    };
    let work = match q.work {
        Some(w) => s.store.work_item(w).await.ok().flatten(),
        None => None,
    };
    let names: HashMap<&str, &str> = c
        .children
        .iter()
        .map(|x| (x.child.as_str(), x.name.as_str()))
        .collect();
    let (first, special) = c.first_month();
    let months = shown_months(&s, &c);
    // The ranks of this month; of the first month while the claim has not
    // started, of the last one once it has ended.
    let rank_month = {
        let now = YearMonth::of(s.today());
        let start = first.max(rules::RULES_FROM);
        let end = c.ended_on.map(YearMonth::of);
        match end {
            Some(e) if now > e => e,
            _ if now < start => start,
            _ => now,
        }
    };
    let current = rules::month(&c.rules(), rank_month);
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<dl><dt>受給者</dt><dd id="claimant">{}</dd><dt>請求日</dt><dd>{}</dd><dt>支給開始月</dt><dd>{}{}</dd><dt>状態</dt><dd id="status">{}</dd></dl>"#,
        esc(&c.claimant_name),
        s.wareki(c.claimed_on),
        s.month(first.max(rules::RULES_FROM)),
        if special {
            "（出生・転入から15日以内の請求：事由発生月の翌月から。児童手当法第8条第3項）"
        } else {
            "（請求月の翌月から。児童手当法第8条第2項）"
        },
        esc(&status_ja(&s, &c))
    );
    let _ = write!(
        b,
        r#"<h2 id="children">児童</h2><table aria-labelledby="children"><thead><tr><th scope="col">氏名</th><th scope="col">生年月日</th><th scope="col">順位（{}）</th><th scope="col">支給対象の終期</th><th scope="col">備考</th></tr></thead><tbody>"#,
        s.month(rank_month)
    );
    for ch in &c.children {
        let rank = current
            .as_ref()
            .and_then(|m| m.children.iter().find(|x| x.key == ch.child))
            .map(|x| format!("第{}子", x.rank))
            .unwrap_or_else(|| "数えない".into());
        let mut note = String::new();
        if let Some(l) = ch.left_on {
            let _ = write!(
                note,
                "{}（{}）：{}分から減額",
                ch.left_reason.as_deref().unwrap_or("異動"),
                s.wareki(l),
                s.month(YearMonth::of(l).next())
            );
        }
        // A child who left and came back: the months away are not paid
        // (児童手当法第9条第1項・第3項).
        let first = c.first_month().0;
        for sp in &ch.earlier {
            let _ = write!(
                note,
                "{}以前の期間：{}分から{}分まで（{}・{}）",
                if note.is_empty() { "" } else { "<br>" },
                s.month(
                    rules::first_paid_month(sp.requested_on, sp.event_on)
                        .0
                        .max(first)
                ),
                s.month(YearMonth::of(sp.left_on)),
                sp.left_reason.as_deref().unwrap_or("異動"),
                s.wareki(sp.left_on),
            );
        }
        if !ch.earlier.is_empty() {
            let _ = write!(
                note,
                "<br>{}の額改定請求：{}分から再び数える（児童手当法第9条第1項）",
                s.wareki(ch.requested_on),
                s.month(
                    rules::first_paid_month(ch.requested_on, ch.event_on)
                        .0
                        .max(first)
                ),
            );
        }
        if ch.basis != rules::Basis::Household {
            let from = c
                .rules()
                .children
                .iter()
                .find(|x| x.key == ch.child)
                .map(|x| x.from);
            let _ = write!(
                note,
                "{}{}<br>監護・負担を始めた日：{}{}{}",
                if note.is_empty() { "" } else { "<br>" },
                esc(ch.basis.explain_ja()),
                s.wareki(ch.since.unwrap_or(ch.requested_on)),
                if ch.registered {
                    String::new()
                } else {
                    "<br>住民記録なし（他の市区町村に住む子：職員が氏名・生年月日を入力）".to_string()
                },
                from.map(|m| format!(
                    "<br>{}の額改定請求：{}分から数える（{}）",
                    s.wareki(ch.requested_on),
                    s.month(m),
                    if ch.event_on.is_some() {
                        "住所変更等から15日以内の請求：事由発生月の翌月から。児童手当法第9条第2項・第8条第3項"
                    } else {
                        "請求月の翌月から。児童手当法第9条第1項"
                    }
                ))
                .unwrap_or_default()
            );
        }
        if ch.ended_by.is_some() {
            note.push_str("（職員が入力）");
        }
        let over18 = rules::child_until(ch.birth) < s.today();
        if over18
            && ch.basis != rules::Basis::StudentSupport
            && rules::counted_until(ch.birth) >= s.today()
        {
            let _ = write!(
                note,
                r#"{}<form method="post" action="/claims/{}/support"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="child" value="{}"><input type="hidden" name="supported" value="{}"><button type="submit">{}</button></form>"#,
                if ch.supported {
                    "生計費を負担（第3子以降の数えに含む）"
                } else {
                    "生計費の負担は未確認（数えない）"
                },
                c.id,
                esc(&sess.csrf),
                esc(&ch.child),
                if ch.supported { "0" } else { "1" },
                if ch.supported {
                    "負担なしに戻す"
                } else {
                    "生計費の負担を確認した"
                }
            );
        }
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&ch.name),
            s.wareki(ch.birth),
            rank,
            if ch.basis == rules::Basis::StudentSupport {
                format!(
                    "支給対象外（第3子以降の数えは{}まで）",
                    s.wareki(rules::counted_until(ch.birth))
                )
            } else {
                s.wareki(rules::child_until(ch.birth))
            },
            note
        );
    }
    b.push_str("</tbody></table>");
    b.push_str(&account_section(&sess, &c, None));
    if c.end_reason.as_deref() == Some(crate::store::DEATH) {
        let unpaid = match s.store.unpaid_claim(c.id).await {
            Ok(u) => u,
            Err(e) => return internal(e),
        };
        let paid_to_child: Vec<(YearMonth, i64, i64)> = match s.store.paid_months(c.id).await {
            Ok(p) => p
                .into_iter()
                .filter(|x| x.2 == PayRule::Unpaid)
                .map(|(m, a, _, run)| (m, a, run))
                .collect(),
            Err(e) => return internal(e),
        };
        // What the next file does with the claim — the special file made
        // today, or else (the months of the death passed into 過去分) the
        // next regular one: pays it to the child (a 未支払請求 recorded)
        // or holds it.
        let today = s.today();
        let next_regular = rules::payment_month(YearMonth::of(today).plus(-1)).first_day();
        let mut next = Vec::new();
        for (rule, on) in [(PayRule::OnEnd, today), (PayRule::Regular, next_regular)] {
            match (s.store.due(rule, on).await, s.store.held(rule, on).await) {
                (Ok(d), Ok(h)) => next.extend(
                    d.into_iter()
                        .chain(h)
                        .filter(|l| l.claim_id == c.id && l.rule == PayRule::Unpaid),
                ),
                (Err(e), _) | (_, Err(e)) => return internal(e),
            }
            if !next.is_empty() {
                break;
            }
        }
        b.push_str(&unpaid_section(
            &s,
            &sess,
            &c,
            &next,
            unpaid.as_ref(),
            &paid_to_child,
            None,
        ));
    }
    if let Some(fid) = c.filing {
        logged!(
            s,
            ctx.entry(&sess, Action::PersonRead, format!("filing:{fid}"))
        );
        let filed = filed_answers(&s, fid).await;
        b.push_str(&filed_section(&s, &sess, &c, &filed));
    }
    if c.ended_on.is_none() {
        b.push_str(&apart_forms(&s, &sess, &c));
    }
    if let Some(w) = work.filter(|w| w.claim_id == Some(c.id) && !w.done) {
        let _ = write!(
            b,
            r#"<h2 id="increase">額改定請求（{name}）</h2><form method="post" action="/claims/{id}/children"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="work" value="{wid}">
<label for="requested_on">請求日（和暦または西暦）</label><input id="requested_on" name="requested_on" value="{today}" required>
<p><button type="submit" id="increase-submit">{name}を加える</button></p></form>"#,
            name = esc(&w.person_name),
            id = c.id,
            csrf = esc(&sess.csrf),
            wid = w.id,
            today = esc(&s.wareki(s.today()))
        );
    }
    if c.public_servant {
        b.push_str("<p>公務員のため、手当は所属庁から支給されます（児童手当法第17条）。市からの支払はありません。下の額は参考です。</p>");
    }
    match s.store.recoveries(c.id).await {
        Ok(r) if !r.is_empty() => {
            let repaid = match s.store.repayments(c.id).await {
                Ok(x) => x,
                Err(e) => return internal(e),
            };
            let notices = match s.store.notices(c.id).await {
                Ok(x) => x,
                Err(e) => return internal(e),
            };
            b.push_str(&recoveries_section(&s, &r, &c.rules(), &names));
            b.push_str(&notices_section(&s, &sess.csrf, c.id, &r, &notices));
            b.push_str(&repayments_section(&s, &sess.csrf, c.id, &r, &repaid));
        }
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    b.push_str(r#"<h2 id="months">月ごとの手当額</h2><table aria-labelledby="months"><thead><tr><th scope="col">月</th><th scope="col">支払月</th><th scope="col">月額</th><th scope="col">内訳（根拠）</th><th scope="col">支払済み</th></tr></thead><tbody>"#);
    for m in &months {
        let detail: Vec<String> = m
            .children
            .iter()
            .map(|x| {
                format!(
                    "{}（第{}子{}）{}：{}",
                    esc(names.get(x.key.as_str()).copied().unwrap_or("")),
                    x.rank,
                    match x.basis {
                        rules::Basis::Household => "",
                        rules::Basis::SeparateCare => "・別居監護：児童手当法第4条第1項第1号",
                        rules::Basis::StudentSupport => {
                            "・大学生等の生計費負担：児童手当法第6条第1項"
                        }
                    },
                    yen(x.amount),
                    esc(x.rule.explain_ja())
                )
            })
            .collect();
        let _ = write!(
            b,
            r#"<tr><td class="m">{}</td><td class="m">{}</td><td class="n">{}</td><td>{}</td><td>{}</td></tr>"#,
            s.month(m.month),
            s.month(m.paid_in),
            yen(m.total),
            detail.join("<br>"),
            match paid.get(&m.month) {
                Some((rules, run, amount)) => {
                    let how = rules
                        .iter()
                        .map(|r| match r {
                            PayRule::Regular => "定例払",
                            PayRule::OnEnd => "消滅時の随時払",
                            PayRule::Arrears => "過去分",
                            PayRule::Refund => "還付",
                            PayRule::Unpaid => "未支払（児童への支払）",
                        })
                        .collect::<Vec<_>>()
                        .join("・");
                    // What was paid, beside the amount due now: a 過払
                    // (the table above) or a difference still to pay.
                    let diff = match amount.cmp(&m.total) {
                        std::cmp::Ordering::Greater => {
                            format!("（うち{}は過払）", yen(amount - m.total))
                        }
                        std::cmp::Ordering::Less => {
                            format!("（差額{}は未払）", yen(m.total - amount))
                        }
                        std::cmp::Ordering::Equal => String::new(),
                    };
                    format!(
                        r#"<a href="/payments/runs/{run}">{}を{how}で支払済み</a>{diff}"#,
                        yen(*amount)
                    )
                }
                None => "未払".to_string(),
            }
        );
    }
    b.push_str("</tbody></table><p>支払は年6回（2月・4月・6月・8月・10月・12月）、各支払月の前月までの2か月分です（児童手当法第8条第4項）。</p>");
    page(&format!("受給者：{}", c.claimant_name), Some(&sess), &b)
}

/// A claim's overpayments (過払) in words: the month (和暦), what was
/// paid and what is due now with the rule of each child's amount, why it
/// fell (with the article), and how it is recovered: withheld from the
/// next payment (内払調整, 児童手当法第13条) or claimed back (返還請求).
fn recoveries_section(
    s: &WebState,
    rows: &[crate::store::RecoveryRow],
    claim: &rules::Claim,
    names: &HashMap<&str, &str>,
) -> String {
    let name = |k: &str| names.get(k).copied().unwrap_or("児童").to_string();
    let mut b = String::from(
        r#"<h2 id="recoveries">過払（返還金）</h2><p>支払った後に届いた死亡・転出などの異動で、すでに支払った月分の手当額が下がった分です。次の支払から差し引きます（内払調整：児童手当法第13条）。差し引ききれない額は返還を求めます。</p><table aria-labelledby="recoveries"><thead><tr><th scope="col">月分</th><th scope="col">支払った額</th><th scope="col">本来の額（根拠）</th><th scope="col">過払額</th><th scope="col">理由</th><th scope="col">精算</th></tr></thead><tbody>"#,
    );
    let (mut owed, mut demanded, mut refund) = (0, 0, 0);
    for r in rows {
        let state = r.state();
        let now = match rules::month(claim, r.month).map(|m| m.children) {
            None => "支給されない月".to_string(),
            Some(lines) => lines
                .iter()
                .map(|x| {
                    format!(
                        "{}（第{}子）{}：{}",
                        esc(&name(&x.key)),
                        x.rank,
                        yen(x.amount),
                        esc(x.rule.explain_ja())
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>"),
        };
        let when = r
            .reduction
            .on()
            .map(|d| format!("{}の異動。", s.wareki(d)))
            .unwrap_or_default();
        let mut settle = String::from(state.label_ja());
        let offset = r.offset();
        if offset > 0 {
            let runs: Vec<String> = r
                .offsets
                .iter()
                .map(|(run, a)| {
                    format!(
                        r#"<a href="/payments/runs/{run}">第{run}号</a>で{}"#,
                        yen(*a)
                    )
                })
                .collect();
            let _ = write!(settle, "：{}を差し引き済み", runs.join("、"));
        }
        for (id, on, a) in &r.repaid {
            let _ = write!(
                settle,
                "、{}に{}の返還を受けた（収納番号 {id}）",
                s.wareki(*on),
                yen(*a)
            );
        }
        if r.cancelled > 0 {
            let _ = write!(settle, "、{}を取消し", yen(r.cancelled));
        }
        for (run, a) in &r.refunds {
            let _ = write!(
                settle,
                r#"、<a href="/payments/runs/{run}">第{run}号</a>で{}を還付済み"#,
                yen(*a)
            );
        }
        if r.remaining() > 0 && (offset > 0 || !r.repaid.is_empty() || r.cancelled > 0) {
            let _ = write!(settle, "、残り{}", yen(r.remaining()));
        }
        match state {
            rules::Recovery::AwaitingOffset => owed += r.remaining(),
            rules::Recovery::Demanded => demanded += r.remaining(),
            rules::Recovery::Refund => {
                let _ = write!(settle, "（還付する額 {}）", yen(r.refund_due()));
                refund += r.refund_due();
            }
            rules::Recovery::Settled | rules::Recovery::Cancelled => {}
        }
        let _ = write!(
            b,
            r#"<tr><td class="m">{}</td><td class="n">{}</td><td><span class="nw">{}</span><br>{}</td><td class="n">{}</td><td>{}{}</td><td>{}</td></tr>"#,
            s.month(r.month),
            yen(r.paid),
            yen(r.due),
            now,
            yen(r.amount),
            when,
            esc(&r.reduction.explain_ja(&name)),
            settle
        );
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        r#"<p id="recovery-total">次の支払で差し引く額 {}、返還を求める額 {}</p>"#,
        yen(owed),
        yen(demanded)
    );
    if refund > 0 {
        let _ = write!(
            b,
            r#"<p id="recovery-refund">還付する額 {}：過払の原因となった異動が取り消されたため、差し引いた額・返還を受けた額のうちこの額は受給者に支払うべき手当です。次の定例払の支払ファイルで、受給者の振込先口座に「還付」として支払います（口座未登録のときは、登録するまで保留します）。</p>"#,
            yen(refund)
        );
    }
    b
}

/// The repayments received for a claim (返還金の収納), and the form to
/// record one while anything is still to be recovered.
fn repayments_section(
    s: &WebState,
    csrf: &str,
    claim_id: i64,
    rows: &[crate::store::RecoveryRow],
    repaid: &[crate::store::Repayment],
) -> String {
    let mut b = String::from(r#"<h2 id="repayments">返還金の収納</h2>"#);
    if repaid.is_empty() {
        b.push_str("<p>返還を受けた記録はありません。</p>");
    } else {
        b.push_str(r#"<table aria-labelledby="repayments"><thead><tr><th scope="col">収納番号</th><th scope="col">受領日</th><th scope="col">金額</th><th scope="col">記録した職員</th><th scope="col">取消し</th></tr></thead><tbody>"#);
        for r in repaid {
            let cancel = match &r.cancelled {
                Some(x) => format!(
                    r#"<span id="repayment-cancelled-{}">取消し済み：{}（{}、{}）。この収納は過払の精算に数えません。</span>"#,
                    r.id,
                    esc(&x.reason),
                    esc(&x.by),
                    when(s, x.at)
                ),
                None => format!(
                    r#"<details><summary>誤って記録した収納を取り消す</summary><form method="post" action="/claims/{claim_id}/repayments/{rid}/cancel"><input type="hidden" name="csrf" value="{csrf}"><p>取り消すと、この収納で精算した過払は未精算に戻ります。</p><label for="cancel_reason_{rid}">取消しの理由（必須）</label><input id="cancel_reason_{rid}" name="reason" maxlength="200" required><p><button type="submit" id="cancel-repayment-{rid}">収納番号 {rid} を取り消す</button></p></form></details>"#,
                    rid = r.id,
                    csrf = esc(csrf),
                ),
            };
            let _ = write!(
                b,
                r#"<tr><td class="n">{}</td><td>{}</td><td class="n">{}</td><td>{}</td><td>{}</td></tr>"#,
                r.id,
                s.wareki(r.received_on),
                if r.cancelled.is_some() {
                    format!("<del>{}</del>", yen(r.amount))
                } else {
                    yen(r.amount)
                },
                esc(&r.recorded_by),
                cancel
            );
        }
        b.push_str("</tbody></table>");
    }
    let owed: i64 = rows.iter().map(|r| r.remaining()).sum();
    if owed > 0 {
        let _ = write!(
            b,
            r#"<form method="post" action="/claims/{claim_id}/repayments"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="nonce" value="{nonce}">
<p>残りの過払 {owed_yen} のうち、受給者から返還を受けた額を記録します（古い月分から充てます）。</p>
<label for="repay_amount">金額（円）</label><input id="repay_amount" name="amount" inputmode="numeric" required>
<label for="repay_on">受領日（和暦または西暦）</label><input id="repay_on" name="received_on" value="{today}" required>
<p><button type="submit" id="repay-submit">返還金の収納を記録する</button></p></form>"#,
            csrf = esc(csrf),
            nonce = random_hex(),
            owed_yen = yen(owed),
            today = esc(&s.wareki(s.today()))
        );
    }
    b
}

/// An amount of yen as a clerk types it: digits (half- or full-width),
/// with or without 「,」「円」 and spaces; None unless 1 to 99,999,999.
fn parse_yen(input: &str) -> Option<i64> {
    let digits: String = input
        .trim()
        .trim_end_matches('円')
        .chars()
        .map(machi_domain::input::fold_char)
        .filter(|c| !matches!(c, ',' | '、' | ' '))
        .collect();
    if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

#[derive(Deserialize)]
struct RepaymentForm {
    csrf: String,
    /// The form's one-time key ([`crate::store::Store::record_repayment`]).
    #[serde(default)]
    nonce: String,
    amount: String,
    received_on: String,
}

/// Records a repayment received (返還金の収納): the amount and the day,
/// logged; refused in both languages when the amount or the day is
/// unreadable, the day is in the future, or more than is owed.
async fn repayment_record(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<RepaymentForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let bad =
        |ja: &str, en: &str| error_page(Some(&sess), StatusCode::UNPROCESSABLE_ENTITY, ja, en);
    if f.nonce.len() != 64 || !f.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(
            "画面が古いため記録できません。受給者の画面を開き直して入力してください。",
            "This form is out of date; open the claim again and enter the repayment there.",
        );
    }
    let Some(amount) = parse_yen(&f.amount) else {
        return bad(
            "金額は1円以上の整数で入力してください（例 15000）。",
            "Enter the amount in whole yen, 1 or more (e.g. 15000).",
        );
    };
    let received_on = match required_date(&s.eras, &f.received_on, "受領日", "day received") {
        Ok(d) if d <= s.today() => d,
        Ok(_) => {
            return bad(
                "受領日が未来の日付です。",
                "The day received is in the future.",
            );
        }
        Err(r) => return bad(&r.ja, &r.en),
    };
    match s.store.claim(id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error_page(
                Some(&sess),
                StatusCode::NOT_FOUND,
                "その受給者はいません。",
                "No such claim.",
            );
        }
        Err(e) => return internal(e),
    }
    let log = ctx
        .entry(&sess, Action::RepaymentRecorded, format!("claim:{id}"))
        .detail(format!("{}受領", s.wareki(received_on)));
    match s
        .store
        .record_repayment(id, amount, received_on, &f.nonce, log)
        .await
    {
        Ok(Ok(_)) => Redirect::to(&format!("/claims/{id}#repayments")).into_response(),
        Ok(Err(crate::store::RepaymentRefused::NothingOwed)) => bad(
            "この受給者に返還を求めている過払はありません。",
            "Nothing of this claim is to be recovered.",
        ),
        Ok(Err(crate::store::RepaymentRefused::MoreThanOwed { owed })) => bad(
            &format!("残りの過払（{}）を超えています。", yen(owed)),
            &format!("More than is still to be recovered ({owed} yen)."),
        ),
        Ok(Err(crate::store::RepaymentRefused::BeforeFound { found_on })) => bad(
            &format!(
                "受領日が、過払が判明した日（{}）より前です。判明する前に返還を受けることはありません。受領日を確かめて入力し直してください。",
                s.wareki(found_on)
            ),
            &format!(
                "The day received is before the overpayment was found ({}): nothing was owed then. Check the day received and enter it again.",
                found_on.format("%-d %B %Y")
            ),
        ),
        Err(e) => internal(e),
    }
}

/// The 返還通知書 issued for a claim (「返還通知 令和…年…月…日 発行済み」,
/// each with a link to print it again) and, while part of the claim's
/// overpayments is a 返還請求 that no notice states as it is now, the form
/// to issue one (the due date prefilled 30 days ahead, in 和暦).
fn notices_section(
    s: &WebState,
    csrf: &str,
    claim_id: i64,
    rows: &[crate::store::RecoveryRow],
    notices: &[crate::store::Notice],
) -> String {
    let parts: Vec<(i64, i64)> = demanded_parts(rows);
    let demanded: i64 = parts.iter().map(|p| p.1).sum();
    if demanded == 0 && notices.is_empty() {
        return String::new();
    }
    let mut b = String::from(r#"<h2 id="notices">返還通知</h2>"#);
    if notices.is_empty() {
        b.push_str("<p>返還通知書はまだ発行していません。</p>");
    }
    for n in notices.iter().rev() {
        let _ = write!(
            b,
            r#"<p class="notice-issued" id="notice-{id}">返還通知 {issued} 発行済み（通知番号 第{id}号、返還を求める額 {amount}、納付期限 {due}{how}） <a href="/claims/{claim_id}/notices/{id}" id="notice-print-{id}">返還通知書を印刷する（再印刷）</a></p>"#,
            id = n.id,
            issued = s.wareki(n.issued_on),
            amount = yen(n.amount),
            due = s.wareki(n.due_on),
            // A notice to hand over at the counter says so here too: it
            // must never be posted.
            how = if n.address == COUNTER_DELIVERY {
                "、窓口で手渡し（郵送しない）"
            } else {
                ""
            },
        );
    }
    let current = notices.last().is_some_and(|n| n.parts == parts);
    if demanded > 0 && !current {
        let _ = write!(
            b,
            r#"<form method="post" action="/claims/{claim_id}/notices"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="nonce" value="{nonce}">
<p>{lead}返還を求める額 {amount}（次の支払で差し引ききれなかった過払）について、受給者に返還通知書を発行します。宛先の氏名・住所は住民記録から読み込みます。</p>
<label for="notice_due">納付期限（和暦または西暦）</label><input id="notice_due" name="due_on" value="{due}" required>
<p><button type="submit" id="notice-submit">返還通知書を発行する</button></p></form>"#,
            csrf = esc(csrf),
            nonce = random_hex(),
            lead = if notices.is_empty() {
                ""
            } else {
                "前回の通知の後に返還を求める額が変わりました。"
            },
            amount = yen(demanded),
            due = esc(&s.wareki(s.today() + chrono::Days::new(NOTICE_DEFAULT_DAYS))),
        );
    }
    b
}

/// What of a claim's overpayments is a 返還請求 now: (recovery id, yen
/// still owed), oldest first (what a notice demands).
fn demanded_parts(rows: &[crate::store::RecoveryRow]) -> Vec<(i64, i64)> {
    rows.iter()
        .filter(|r| r.state() == rules::Recovery::Demanded)
        .map(|r| (r.id, r.remaining()))
        .collect()
}

/// The fewest days a 返還通知書 gives the claimant between its issue and
/// its 納付期限: the notice must reach them by post and they must be
/// able to arrange the payment (or ask to pay in parts) before the due
/// date; a due date of tomorrow would be broken before it is read. The
/// form prefills 30 days ([`NOTICE_DEFAULT_DAYS`]).
pub const NOTICE_MIN_DAYS: u64 = 10;

/// The 納付期限 the notice form prefills, in days after the issue date.
pub const NOTICE_DEFAULT_DAYS: u64 = 30;

#[derive(Deserialize)]
struct NoticeForm {
    csrf: String,
    /// The form's one-time key ([`crate::store::Store::issue_notice`]).
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    due_on: String,
    /// `counter`: to be handed to the claimant at the counter (窓口交付),
    /// printed without an address and the registry not asked for one.
    #[serde(default)]
    delivery: String,
    /// On the refusal page's counter form: the day the page checked the
    /// due date, vouched for by this process ([`WebState::vouch_checked`]).
    #[serde(default)]
    checked: String,
}

/// What a notice handed over at the counter shows where the address goes.
pub const COUNTER_DELIVERY: &str = "窓口交付";

/// Issues a 返還通知書 for what of the claim is a 返還請求: the due date the
/// clerk chose (at least [`NOTICE_MIN_DAYS`] after today, within a year), the claimant's name and
/// address read from the registry (logged as a read), the issue logged;
/// then the printable notice. Refused in both languages, nothing written,
/// when the date is missing or unreadable or out of range, the claimant
/// died (to post or to hand over at the counter alike), nothing is
/// demanded, or the registry shows no address to send it to.
async fn notice_issue(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    Form(f): Form<NoticeForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let Ok(id) = raw.parse::<i64>() else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "その受給者はいません。",
            "No such claim.",
        );
    };
    let bad =
        |ja: &str, en: &str| error_page(Some(&sess), StatusCode::UNPROCESSABLE_ENTITY, ja, en);
    if f.nonce.len() != 64 || !f.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(
            "画面が古いため発行できません。受給者の画面を開き直してください。",
            "This form is out of date; open the claim again.",
        );
    }
    // The same form sent again (a double click, a reload): answered from
    // the notice issued the first time, without reading the registry
    // again (nor logging a read of the claimant's record).
    match s.store.notice_by_nonce(id, &f.nonce).await {
        Ok(Some(n)) => {
            return Redirect::to(&format!("/claims/{id}/notices/{}", n.id)).into_response();
        }
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    let today = s.today();
    let parsed = required_date(&s.eras, &f.due_on, "納付期限", "due date");
    // The counter hand-over offered by the refusal page re-posts the due
    // date that page checked: held to the day it was checked, so that a
    // clerk who presses the button after midnight is not refused a date
    // of exactly NOTICE_MIN_DAYS days (the notice is handed over in
    // person, so no day is lost in the post). Only a genuine token of
    // today or yesterday counts; any other form is checked against today.
    let checked_on = match (&parsed, f.delivery == "counter") {
        (Ok(d), true) => s
            .checked_on(id, &f.nonce, *d, &sess.csrf, &f.checked)
            .unwrap_or(today),
        _ => today,
    };
    let earliest = checked_on + chrono::Days::new(NOTICE_MIN_DAYS);
    let due_on = match parsed {
        Ok(d) if d < earliest => {
            return bad(
                &format!(
                    "納付期限は発行日から{NOTICE_MIN_DAYS}日以上後の日にしてください（{}以降）。受給者が通知を受け取り、納付の準備をする日数が要ります。",
                    s.wareki(earliest)
                ),
                &format!(
                    "The due date must be at least {NOTICE_MIN_DAYS} days after the issue date (on or after {}), so that the claimant has time to receive the notice and pay.",
                    earliest.format("%-d %B %Y")
                ),
            );
        }
        Ok(d) if d > today + chrono::Days::new(365) => {
            return bad(
                "納付期限は1年以内の日にしてください。",
                "The due date must be within a year.",
            );
        }
        Ok(d) => d,
        Err(r) => return bad(&r.ja, &r.en),
    };
    let c = match claim_or_404(&s, &sess, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // A claimant who died: no notice is addressed to them, to post or to
    // hand over at the counter. The allowance system knows it itself (the
    // registry's 死亡 ended the claim, [`crate::store::DEATH`]; a 死亡
    // cancelled in the registry reinstates the claim), so neither path
    // reads the registry for it: the counter path, which reads nothing,
    // is refused as the posted one is.
    if claimant_died(&c) {
        return error_page(
            Some(&sess),
            StatusCode::CONFLICT,
            "受給者は死亡しています（住民記録の死亡の異動により受給資格が消滅しました）。亡くなった受給者あての返還通知書は、郵送するものも窓口で手渡すものも発行できません。返還通知書は発行していません。返還の請求をどうするかは上司に相談してください。",
            "The claimant has died (the registry recorded it, and the claim ended). A notice cannot be addressed to a claimant who has died, whether posted or handed over at the counter. No notice was issued; consult your supervisor on how to claim the money back.",
        );
    }
    match s.store.recoveries(id).await {
        Ok(r) if demanded_parts(&r).is_empty() => {
            return bad(
                "この受給者に返還を求めている過払はありません。",
                "Nothing of this claim is to be paid back.",
            );
        }
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    let counter = f.delivery == "counter";
    let to = if counter {
        // Handed over at the counter: no address is read, none printed;
        // the name is the claim's own.
        crate::worker::MailingAddress {
            name: c.claimant_name.clone(),
            postal_code: None,
            address: COUNTER_DELIVERY.into(),
            moved_out: false,
        }
    } else {
        logged!(
            s,
            ctx.entry(&sess, Action::PersonRead, format!("person:{}", c.claimant))
                .detail("返還通知書の宛先")
        );
        match s.client.mailing_address(&c.claimant).await {
            Ok(crate::worker::Mailing::Found(a)) => a,
            Ok(crate::worker::Mailing::Hidden) => {
                // j440: the registry withholds the address; nothing about it is
                // shown or guessed, and nothing is posted. The clerk may issue
                // the notice to hand over at the counter instead.
                let mut r = page(
                    "エラー",
                    Some(&sess),
                    &format!(
                        r#"<p class="err" role="alert" id="notice-hidden">{ja}<br lang="en"><span lang="en">{en}</span></p>
<form method="post" action="/claims/{id}/notices"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="nonce" value="{nonce}"><input type="hidden" name="due_on" value="{due}"><input type="hidden" name="delivery" value="counter"><input type="hidden" name="checked" value="{checked}">
<p id="notice-counter-due">納付期限 {due}<br lang="en"><span lang="en">Due date: {due_en}</span></p>
<p>窓口で手渡す返還通知書は、住所を載せず「{counter}」と印刷します（郵送しないでください）。<span lang="en">A notice to hand over at the counter is printed with 「{counter}」 instead of an address (do not post it).</span></p>
<p><button type="submit" id="notice-counter">窓口で手渡す返還通知書を発行する</button></p></form>
<p><a href="/claims/{id}#notices">受給者の画面へ戻る</a></p>"#,
                        ja = esc(
                            "この受給者には支援措置（DV等の被害者の保護）がかかっているため、住民記録は住所をこのシステムに示しません。返還通知書は発行していません。郵送せず、支援措置の担当者に相談のうえ、受給者に窓口で手渡してください。"
                        ),
                        en = esc(
                            "A support measure (protection of a victim of domestic violence or the like) applies to this claimant, so the registry withholds the address from this system. No notice was issued. Do not post one: consult the support-measure officer and hand the notice to the claimant at the counter."
                        ),
                        csrf = esc(&sess.csrf),
                        nonce = esc(&f.nonce),
                        due = esc(&s.wareki(due_on)),
                        due_en = due_on.format("%-d %B %Y"),
                        checked = esc(&s.vouch_checked(id, &f.nonce, due_on, &sess.csrf)),
                        counter = COUNTER_DELIVERY,
                    ),
                );
                *r.status_mut() = StatusCode::CONFLICT;
                return r;
            }
            Ok(crate::worker::Mailing::None) => {
                return error_page(
                    Some(&sess),
                    StatusCode::CONFLICT,
                    "住民記録に受給者の送付先（住所・転出先）がありません（死亡・国外転出、または閲覧できない記録）。返還通知書は発行していません。",
                    "The registry shows no address to send the notice to (death, a move abroad, or a record this system may not read); no notice was issued.",
                );
            }
            Err(e) => return internal(e),
        }
    };
    let log = ctx
        .entry(&sess, Action::NoticeIssued, format!("claim:{id}"))
        .detail(if counter {
            format!("納付期限 {} {COUNTER_DELIVERY}", s.wareki(due_on))
        } else {
            format!("納付期限 {}", s.wareki(due_on))
        });
    let n = crate::store::NewNotice {
        issued_on: today,
        due_on,
        name: to.name,
        postal_code: to.postal_code,
        address: to.address,
    };
    match s.store.issue_notice(id, n, &f.nonce, log).await {
        Ok(Ok(n)) => Redirect::to(&format!("/claims/{id}/notices/{}", n.id)).into_response(),
        Ok(Err(crate::store::NoticeRefused::NothingDemanded)) => bad(
            "この受給者に返還を求めている過払はありません。",
            "Nothing of this claim is to be paid back.",
        ),
        Err(e) => internal(e),
    }
}

/// Whether the claim ended by the claimant's death (as the registry's
/// 死亡 recorded it; a cancelled 死亡 reinstates the claim and clears it).
fn claimant_died(c: &ClaimRow) -> bool {
    c.ended_on.is_some() && c.end_reason.as_deref() == Some(crate::store::DEATH)
}

/// The 返還通知書 as issued, for printing on A4 (the menu and the links
/// are not printed). Each showing is logged (it names the claimant, and a
/// reprint is a new copy of the notice).
async fn notice_page(
    State(s): State<WebState>,
    ctx: Ctx,
    Path((raw, raw_notice)): Path<(String, String)>,
) -> Response {
    let sess = signed_in!(ctx);
    let not_found = |sess: &Session| {
        error_page(
            Some(sess),
            StatusCode::NOT_FOUND,
            "その返還通知書はありません。",
            "No such notice.",
        )
    };
    let (Ok(id), Ok(nid)) = (raw.parse::<i64>(), raw_notice.parse::<i64>()) else {
        return not_found(&sess);
    };
    let (n, c, rows) = match (
        s.store.notice(id, nid).await,
        s.store.claim(id).await,
        s.store.recoveries(id).await,
    ) {
        (Ok(Some(n)), Ok(Some(c)), Ok(rows)) => (n, c, rows),
        (Ok(_), Ok(_), Ok(_)) => return not_found(&sess),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(e),
    };
    logged!(
        s,
        ctx.entry(&sess, Action::NoticePrinted, format!("claim:{id}"))
            .detail(format!("通知番号 {nid}"))
    );
    // A notice to post is shown with its address only while the registry
    // still shows one: a support measure that began after the issue
    // (j440), or a registry that cannot be asked, withholds it, and the
    // notice is printed to hand over at the counter.
    let withheld: Option<&str> = if n.address == COUNTER_DELIVERY {
        None
    } else {
        logged!(
            s,
            ctx.entry(&sess, Action::PersonRead, format!("person:{}", c.claimant))
                .detail("返還通知書の再印刷の宛先確認")
        );
        match s.client.mailing_address(&c.claimant).await {
            Ok(crate::worker::Mailing::Hidden) => Some(
                "この受給者には現在、支援措置（DV等の被害者の保護）がかかっています。発行時の住所は表示しません。郵送せず、窓口で手渡してください。<span lang=\"en\">A support measure now protects this claimant: the address at issue is not shown. Do not post the notice; hand it over at the counter.</span>",
            ),
            Ok(_) => None,
            Err(_) => Some(
                "住民記録に確認できないため、住所を表示しません。郵送せず、確認できてから印刷するか、窓口で手渡してください。<span lang=\"en\">The registry cannot be asked now, so the address is not shown. Do not post the notice; print it again later or hand it over at the counter.</span>",
            ),
        }
    };
    let names: HashMap<&str, &str> = c
        .children
        .iter()
        .map(|x| (x.child.as_str(), x.name.as_str()))
        .collect();
    let name = |k: &str| names.get(k).copied().unwrap_or("児童").to_string();
    let mut lines = String::new();
    let mut articles: Vec<&'static str> = Vec::new();
    for (rid, amount) in &n.parts {
        let Some(r) = rows.iter().find(|r| r.id == *rid) else {
            continue;
        };
        let article = match r.reduction {
            rules::Reduction::Ended { .. } => {
                "児童手当法第8条第2項（受給資格が消滅した月で支給が終わる）"
            }
            rules::Reduction::ChildLeft { .. } => {
                "児童手当法第9条第3項（児童が監護を離れた月の翌月から手当額を減額する）"
            }
            rules::Reduction::Recomputed => "児童手当法第6条第1項（手当の額）",
        };
        if !articles.contains(&article) {
            articles.push(article);
        }
        let _ = write!(
            lines,
            r#"<tr><td class="m">{}分</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}{}</td></tr>"#,
            s.month(r.month),
            yen(r.paid),
            yen(r.due),
            yen(*amount),
            r.reduction
                .on()
                .map(|d| format!("{}の異動：", s.wareki(d)))
                .unwrap_or_default(),
            esc(&r.reduction.explain_ja(&name)),
        );
    }
    let b = format!(
        r##"<div class="noprint">{warning}<p><a href="/claims/{id}#notices">受給者の画面へ戻る</a></p><p>ブラウザの印刷機能（Ctrl+P など）で、A4の用紙に印刷してください。メニューとこの案内は印刷されません。</p></div>
<article class="notice" aria-labelledby="notice-title">
<p class="r">通知番号 第{nid}号<br>{issued}</p>
<p id="notice-to">{postal}{address}<br>{who} 様</p>
<p class="r">児童手当担当</p>
<h2 id="notice-title">児童手当の返還について（通知）</h2>
<p>あなたに支払った児童手当のうち、次の月分は、支払った後に届いた異動（死亡・転出など）により、支給すべき額を超えて支払われていました（過払）。その後の手当の支払から差し引いても（内払調整）差し引ききれなかった額を、次のとおり返還してください。</p>
<h3 id="notice-amount-h">返還していただく額</h3><p class="amount" id="notice-amount">{amount}</p>
<h3 id="notice-months">返還を求める月分と理由</h3>
<table aria-labelledby="notice-months"><thead><tr><th scope="col">月分</th><th scope="col">支払った額</th><th scope="col">本来の額</th><th scope="col">返還を求める額</th><th scope="col">理由</th></tr></thead><tbody>{lines}</tbody></table>
<h3 id="notice-basis">根拠</h3><ul aria-labelledby="notice-basis">{basis}<li>児童手当法第13条（支払の調整：支払った過払の手当は、その後に支払う手当の内払とみなすことができる）</li><li>民法第703条（法律上の原因なく受けた利益の返還）</li></ul>
<h3 id="notice-how">納付の方法と期限</h3>
<p>納付期限：<strong id="notice-due">{due}</strong></p>
<p>同封の納付書により、納付期限までに、市の指定金融機関または市役所の窓口で納付してください。期限までに一度に納付することが難しいときは、期限より前に児童手当担当へご相談ください。</p>
<p>この通知の内容について不明な点は、児童手当担当へお問い合わせください。</p>
</article>"##,
        issued = s.wareki(n.issued_on),
        warning = withheld
            .map(|w| format!(r#"<p class="err" role="alert" id="notice-withheld">{w}</p>"#))
            .unwrap_or_default(),
        postal = match (withheld, n.postal_code.as_deref()) {
            (None, Some(p)) => format!("〒{}<br>", esc(p)),
            _ => String::new(),
        },
        address = esc(if withheld.is_some() {
            COUNTER_DELIVERY
        } else {
            &n.address
        }),
        who = esc(&n.name),
        amount = yen(n.amount),
        basis = articles
            .iter()
            .map(|a| format!("<li>{a}</li>"))
            .collect::<String>(),
        due = s.wareki(n.due_on),
    );
    page("児童手当返還通知書", Some(&sess), &b)
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Cancels a repayment recorded wrongly, with the clerk's reason (1 to
/// 200 characters), logged; what it settled is outstanding again.
async fn repayment_cancel(
    State(s): State<WebState>,
    ctx: Ctx,
    Path((raw, raw_repayment)): Path<(String, String)>,
    Form(f): Form<CancelForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let bad =
        |ja: &str, en: &str| error_page(Some(&sess), StatusCode::UNPROCESSABLE_ENTITY, ja, en);
    let (Ok(id), Ok(rid)) = (raw.parse::<i64>(), raw_repayment.parse::<i64>()) else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "その収納の記録はありません。",
            "No such repayment.",
        );
    };
    let reason = f.reason.trim();
    if reason.is_empty() {
        return bad(
            "取消しの理由を入力してください。",
            "Enter the reason for the cancellation.",
        );
    }
    if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return bad(
            "取消しの理由は200文字以内で、改行などを含めずに入力してください。",
            "Enter the reason in at most 200 characters, on one line.",
        );
    }
    let log = ctx.entry(&sess, Action::RepaymentCancelled, format!("claim:{id}"));
    match s.store.cancel_repayment(id, rid, reason, log).await {
        Ok(Ok(_)) => Redirect::to(&format!("/claims/{id}#repayments")).into_response(),
        Ok(Err(crate::store::CancelRefused::NoRepayment)) => error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "その収納の記録はありません。",
            "No such repayment.",
        ),
        Ok(Err(crate::store::CancelRefused::AlreadyCancelled)) => error_page(
            Some(&sess),
            StatusCode::CONFLICT,
            "この収納はすでに取り消されています。",
            "This repayment was cancelled already.",
        ),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct ChildForm {
    csrf: String,
    work: i64,
    requested_on: String,
}

async fn child_add(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ChildForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let bad =
        |ja: &str, en: &str| error_page(Some(&sess), StatusCode::UNPROCESSABLE_ENTITY, ja, en);
    let requested_on = match required_date(&s.eras, &f.requested_on, "請求日", "claim date") {
        Ok(d) if d <= s.today() => d,
        Ok(_) => {
            return bad(
                "請求日が未来の日付です。",
                "The claim date is in the future.",
            );
        }
        Err(r) => return bad(&r.ja, &r.en),
    };
    let w = match s.store.work_item(f.work).await {
        Ok(Some(w)) if w.claim_id == Some(id) => w,
        Ok(_) => return bad("その業務は見つかりません。", "No such work item."),
        Err(e) => return internal(e),
    };
    let p = match s.client.resident(&w.person).await {
        Ok(Some(p)) if p.resident => p,
        Ok(_) => {
            return bad(
                "その児童は住民記録にいません。",
                "The child is not a resident.",
            );
        }
        Err(e) => return internal(e),
    };
    let Some(birth) = p.birth else {
        return bad(
            "生年月日が不詳のため加えられません。",
            "The birth date is unknown.",
        );
    };
    // A child who left this claim (転出, 死亡 …) and came back is counted
    // again from a 額改定請求 made after they left (児童手当法第9条第1項).
    if let Ok(Some(c)) = s.store.claim(id).await
        && let Some(x) = c.children.iter().find(|x| x.child == p.addressee_number)
        && let Some(left) = x.left_on
        && requested_on <= left
    {
        return bad(
            &format!(
                "{}はこの認定から{}に外れています。額改定請求の日は、その翌日以降の日を入力してください。",
                x.name,
                s.wareki(left)
            ),
            &format!(
                "{} left this claim on {}. Enter a claim date after that day.",
                x.name,
                left.format("%-d %B %Y")
            ),
        );
    }
    let log = ctx
        .entry(&sess, Action::ChildAdded, format!("claim:{id}"))
        .detail(format!("person:{}", p.addressee_number));
    match s
        .store
        .add_child(
            id,
            (p.addressee_number, p.name, birth),
            requested_on,
            w.event_on,
            log,
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/claims/{id}")).into_response(),
        Err(e) => internal(e),
    }
}

// ------------------------------------------------------------------ children living elsewhere

/// Why a clerk's change to a claim's children was refused: nothing was
/// written. `code` is for the API only; pages show the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub ja: String,
    pub en: String,
}

fn refused(status: StatusCode, code: &'static str, ja: &str, en: &str) -> Refusal {
    Refusal {
        status,
        code,
        ja: ja.into(),
        en: en.into(),
    }
}

fn invalid(code: &'static str, ja: &str, en: &str) -> Refusal {
    refused(StatusCode::UNPROCESSABLE_ENTITY, code, ja, en)
}

/// What the clerk enters to add a child living elsewhere (the form and
/// the API alike). Dates in 和暦 or 西暦.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApartInput {
    /// The child's 宛名番号 when the child lives in this municipality
    /// (name and birthdate are then read from the registry); empty for a
    /// child living elsewhere in Japan.
    #[serde(default)]
    pub addressee_number: String,
    /// Only for a child not resident here.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub birth: String,
    /// `separate_care` (別居監護) or `student_support` (大学生等の生計費負担).
    #[serde(default)]
    pub basis: String,
    /// The day from which the basis holds.
    #[serde(default)]
    pub since: String,
    /// The day of the 額改定請求.
    #[serde(default)]
    pub requested_on: String,
    /// The request came within 15 days of a move or an unavoidable reason
    /// on `since` (第9条第2項, 第8条第3項).
    #[serde(default)]
    pub fifteen_day_rule: bool,
}

/// What the clerk enters to end a child by hand.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndInput {
    /// The child's key on the claim (a 宛名番号, or the key the claim's
    /// JSON shows for a child not resident here).
    #[serde(default)]
    pub child: String,
    /// The day the reason arose: counted through its month, reduced from
    /// the next (第9条第3項).
    #[serde(default)]
    pub ended_on: String,
    /// `no_care`, `no_support`, `death` or `abroad`.
    #[serde(default)]
    pub reason: String,
}

/// Why a child is ended by hand, in words (stored as the words: the
/// claim page shows them as they are).
const END_REASONS: [(&str, &str, &str); 4] = [
    (
        "no_care",
        "監護・生計同一でなくなった",
        "no longer in the claimant's care or sharing their livelihood",
    ),
    (
        "no_support",
        "生計費の負担をやめた",
        "the claimant no longer bears the living costs",
    ),
    ("death", "死亡", "died"),
    ("abroad", "国外に住所を移した", "moved their address abroad"),
];

fn fold(s: &str) -> String {
    s.trim()
        .chars()
        .map(machi_domain::input::fold_char)
        .collect()
}

/// Adds a child living elsewhere to the running claim `claim_id` (a 額改定
/// 請求): a child of this municipality by 宛名番号, read through the
/// registry's API (name and birthdate are never typed), or a child not
/// resident here by name and birthdate. The child counts from the month
/// after the request (児童手当法第9条第1項), or after the event when the
/// request came within 15 days of it (第9条第2項, 第8条第3項). Bad input is
/// refused in Japanese and English and nothing is written; the addition
/// and its access-log entry are one transaction. Returns the child's key
/// and the first month it counts.
pub async fn add_apart_child(
    s: &WebState,
    clerk: &str,
    source: &str,
    claim_id: i64,
    input: &ApartInput,
) -> Result<(String, YearMonth), Refusal> {
    let claim = match s.store.claim(claim_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "not_found",
                "その受給者はいません。",
                "No such claim.",
            ));
        }
        Err(e) => return Err(store_refusal(e)),
    };
    if claim.ended_on.is_some() {
        return Err(refused(
            StatusCode::CONFLICT,
            "claim_ended",
            "受給資格が消滅した認定には児童を加えられません。",
            "The entitlement has ended: no child can be added.",
        ));
    }
    let basis = match rules::Basis::parse(input.basis.trim()) {
        Some(b @ (rules::Basis::SeparateCare | rules::Basis::StudentSupport)) => b,
        _ => {
            return Err(invalid(
                "invalid_basis",
                "事由を「別居監護」または「大学生等の生計費負担」から選んでください。",
                "Choose the basis: living apart in the claimant's care, or a student supported by the claimant.",
            ));
        }
    };
    let today = s.today();
    let requested_on = required_date(&s.eras, &input.requested_on, "請求日", "claim date")?;
    if requested_on > today {
        return Err(invalid(
            "future_date",
            "請求日が未来の日付です。",
            "The claim date is in the future.",
        ));
    }
    if requested_on < claim.claimed_on {
        return Err(invalid(
            "before_claim",
            "請求日が認定請求の日より前です。",
            "The claim date is before the allowance claim itself.",
        ));
    }
    let since = required_date(
        &s.eras,
        &input.since,
        "監護・負担を始めた日",
        "day the care or support began",
    )?;
    if since > requested_on {
        return Err(invalid(
            "since_after_request",
            "監護・負担を始めた日が請求日より後です。",
            "The day the care or support began is after the claim date.",
        ));
    }
    let addressee = fold(&input.addressee_number);
    let (addressee, name, birth) = if !addressee.is_empty() {
        if !input.name.trim().is_empty() || !input.birth.trim().is_empty() {
            return Err(invalid(
                "typed_registry_data",
                "宛名番号を入力したときは、氏名と生年月日は住民記録から読み込みます。氏名と生年月日の欄は空にしてください。",
                "With an addressee number, the name and birthdate are read from the registry: leave those fields empty.",
            ));
        }
        if !addressee.chars().all(|c| c.is_ascii_digit()) || addressee.len() > 20 {
            return Err(invalid(
                "unknown_addressee",
                "その宛名番号の住民は見つかりません（宛名番号は数字です）。",
                "No resident has that addressee number (it is made of digits).",
            ));
        }
        let p = match s.client.resident(&addressee).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(invalid(
                    "unknown_addressee",
                    "その宛名番号の住民は見つかりません。",
                    "No resident has that addressee number.",
                ));
            }
            Err(e) => {
                tracing::warn!("allowance: registry look-up: {e}");
                return Err(refused(
                    StatusCode::BAD_GATEWAY,
                    "registry_unavailable",
                    "住民記録システムに接続できません。時間をおいてもう一度お試しください。",
                    "The resident registry cannot be reached; please try again later.",
                ));
            }
        };
        // The registry answered with a person: the read is logged before
        // anything of it is used.
        if let Err(e) = s
            .store
            .log(
                Entry::new(
                    clerk,
                    source,
                    Action::PersonRead,
                    format!("person:{addressee}"),
                )
                .detail(format!("受給者番号 {claim_id} の別居の児童")),
            )
            .await
        {
            return Err(store_refusal(e));
        }
        if !p.resident {
            return Err(invalid(
                "not_resident",
                "その宛名番号の方は住民ではありません（転出・死亡などで消除）。他の市区町村に住む子は、宛名番号を空けて氏名と生年月日を入力してください。",
                "That person is no longer a resident (moved out or died). For a child living in another municipality, leave the addressee number empty and enter the name and birthdate.",
            ));
        }
        if p.addressee_number == claim.claimant {
            return Err(invalid(
                "claimant_as_child",
                "受給者本人は児童として加えられません。",
                "The claimant cannot be added as a child.",
            ));
        }
        if p.household == claim.household {
            return Err(invalid(
                "same_household",
                "この子は受給者と同じ世帯です。同じ世帯の子は、出生・転入の業務から額改定請求で加えます。",
                "This child is in the claimant's household: a child of the household is added by an increase claim from the work item of the birth or move-in.",
            ));
        }
        let Some(birth) = p.birth else {
            return Err(invalid(
                "unknown_birth",
                "住民記録の生年月日が不詳のため加えられません。",
                "The registry has no birthdate for this person.",
            ));
        };
        (Some(p.addressee_number), p.name, birth)
    } else {
        let name = input.name.trim().to_string();
        if name.is_empty() {
            return Err(invalid(
                "missing_child",
                "宛名番号（この市の住民の子）か、氏名と生年月日（他の市区町村に住む子）を入力してください。",
                "Enter the addressee number (a child resident here) or the name and birthdate (a child living in another municipality).",
            ));
        }
        if name.chars().count() > 60 || name.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_name",
                "氏名は60文字以内で入力してください。",
                "Enter a name of at most 60 characters.",
            ));
        }
        let birth = required_date(&s.eras, &input.birth, "生年月日", "birthdate")?;
        (None, name, birth)
    };
    if birth > today {
        return Err(invalid(
            "future_birth",
            "生年月日が未来の日付です。",
            "The birthdate is in the future.",
        ));
    }
    if since < birth {
        return Err(invalid(
            "since_before_birth",
            "監護・負担を始めた日が生年月日より前です。",
            "The day the care or support began is before the birthdate.",
        ));
    }
    match basis {
        rules::Basis::SeparateCare if since > rules::child_until(birth) => {
            return Err(invalid(
                "basis_age",
                "18歳年度末を過ぎた子です。22歳年度末までの子は「大学生等の生計費負担」を選んでください。",
                "The child is past the fiscal year of 18: up to the fiscal year of 22, choose a student supported by the claimant.",
            ));
        }
        rules::Basis::StudentSupport if since <= rules::child_until(birth) => {
            return Err(invalid(
                "basis_age",
                "18歳年度末までの児童です。「別居監護」を選んでください。",
                "The child is within the fiscal year of 18: choose living apart in the claimant's care.",
            ));
        }
        rules::Basis::StudentSupport if since > rules::counted_until(birth) => {
            return Err(invalid(
                "basis_age",
                "22歳年度末を過ぎた子は第3子以降の数えに含めません。",
                "A child past the fiscal year of 22 does not count towards the rank.",
            ));
        }
        _ => {}
    }
    let from = rules::first_paid_month(requested_on, input.fifteen_day_rule.then_some(since))
        .0
        .max(claim.first_month().0);
    let log = Entry::new(clerk, source, Action::ChildAddedApart, "").detail(format!(
        "{} {} {}分から",
        addressee
            .as_deref()
            .map(|a| format!("person:{a}"))
            .unwrap_or_else(|| "住民記録外の子".into()),
        basis.label_ja(),
        s.month(from)
    ));
    let child = ApartChild {
        addressee,
        name,
        birth,
        basis,
        since,
        requested_on,
        fifteen_day_rule: input.fifteen_day_rule,
    };
    match s.store.add_apart_child(claim_id, child, log).await {
        Ok(Ok(key)) => Ok((key, from)),
        Ok(Err(r)) => Err(child_refusal(r)),
        Err(e) => Err(store_refusal(e)),
    }
}

/// Ends a child of the claim `claim_id` by hand: counted through the
/// month of the day entered, reduced from the next (児童手当法第9条第3項);
/// months paid beyond become overpayments. Refused in Japanese and
/// English, writing nothing, for an unknown child, a child already ended,
/// an unknown reason, a day in the future or before the birth. Returns
/// the first month reduced.
pub async fn end_child(
    s: &WebState,
    clerk: &str,
    source: &str,
    claim_id: i64,
    input: &EndInput,
) -> Result<YearMonth, Refusal> {
    let claim = match s.store.claim(claim_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "not_found",
                "その受給者はいません。",
                "No such claim.",
            ));
        }
        Err(e) => return Err(store_refusal(e)),
    };
    let Some(child) = claim
        .children
        .iter()
        .find(|c| c.child == input.child.trim())
    else {
        return Err(invalid(
            "not_on_claim",
            "その児童はこの認定にいません。",
            "No such child on this claim.",
        ));
    };
    let Some((_, reason_ja, _)) = END_REASONS
        .iter()
        .find(|(code, _, _)| *code == input.reason.trim())
    else {
        return Err(invalid(
            "invalid_reason",
            "終了の事由を選んでください。",
            "Choose the reason for the end.",
        ));
    };
    let on = required_date(
        &s.eras,
        &input.ended_on,
        "事由の発生日",
        "day of the reason",
    )?;
    if on > s.today() {
        return Err(invalid(
            "future_date",
            "事由の発生日が未来の日付です。",
            "The day of the reason is in the future.",
        ));
    }
    if on < child.birth {
        return Err(invalid(
            "before_birth",
            "事由の発生日が生年月日より前です。",
            "The day of the reason is before the birthdate.",
        ));
    }
    let from = YearMonth::of(on).next();
    let log = Entry::new(clerk, source, Action::ChildEnded, "").detail(format!(
        "{} {}（{}）{}分から減額",
        if child.registered {
            format!("person:{}", child.child)
        } else {
            "住民記録外の子".into()
        },
        reason_ja,
        s.wareki(on),
        s.month(from)
    ));
    match s
        .store
        .end_child(
            claim_id,
            child.child.clone(),
            on,
            reason_ja.to_string(),
            log,
        )
        .await
    {
        Ok(Ok(())) => Ok(from),
        Ok(Err(r)) => Err(child_refusal(r)),
        Err(e) => Err(store_refusal(e)),
    }
}

fn store_refusal(e: crate::store::StoreError) -> Refusal {
    tracing::error!("allowance: {e}");
    refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "処理できませんでした。時間をおいてもう一度お試しください。",
        "Something went wrong; please try again later.",
    )
}

fn child_refusal(r: ChildRefused) -> Refusal {
    match r {
        ChildRefused::NoClaim => refused(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        ),
        ChildRefused::ClaimEnded => refused(
            StatusCode::CONFLICT,
            "claim_ended",
            "受給資格が消滅した認定には児童を加えられません。",
            "The entitlement has ended: no child can be added.",
        ),
        ChildRefused::AlreadyOnClaim { ended: false } => refused(
            StatusCode::CONFLICT,
            "already_on_claim",
            "この子はすでにこの認定の児童です。",
            "This child is on the claim already.",
        ),
        ChildRefused::AlreadyOnClaim { ended: true } => refused(
            StatusCode::CONFLICT,
            "already_on_claim",
            "この子はこの認定の児童でした（終了済み）。もう一度加えることはできません。",
            "This child was on the claim and has ended; the child cannot be added again.",
        ),
        ChildRefused::OtherClaim => refused(
            StatusCode::CONFLICT,
            "on_other_claim",
            "この子は別の受給者の認定の児童として数えられています。",
            "This child is counted in another claimant's allowance.",
        ),
        ChildRefused::NotOnClaim => invalid(
            "not_on_claim",
            "その児童はこの認定にいません。",
            "No such child on this claim.",
        ),
        ChildRefused::AlreadyEnded => refused(
            StatusCode::CONFLICT,
            "already_ended",
            "この児童はすでに終了しています。",
            "This child has ended already.",
        ),
    }
}

/// The two forms on a running claim's page: a child living elsewhere
/// added, a child ended by hand.
fn apart_forms(s: &WebState, sess: &Session, c: &ClaimRow) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<h2 id="apart">別居の児童の追加（額改定請求）</h2>
<p>受給者と別の世帯に住む子を加えます。この市の住民の子は宛名番号だけを入力してください（氏名と生年月日は住民記録から読み込みます）。他の市区町村に住む子は、宛名番号を空けて氏名と生年月日を入力してください。額改定請求の翌月分から数えます（児童手当法第9条第1項）。</p>
<form method="post" action="/claims/{id}/children/apart"><input type="hidden" name="csrf" value="{csrf}">
<label for="apart_addressee">子の宛名番号（この市の住民の場合）</label><input id="apart_addressee" name="addressee_number" inputmode="numeric" autocomplete="off">
<fieldset><legend>他の市区町村に住む子（宛名番号がない場合）</legend>
<label for="apart_name">氏名</label><input id="apart_name" name="name" autocomplete="off">
<label for="apart_birth">生年月日（和暦または西暦）</label><input id="apart_birth" name="birth" autocomplete="off">
</fieldset>
<fieldset><legend>事由</legend>
<label><input type="radio" name="basis" value="separate_care" id="basis_separate"> 別居監護（18歳年度末までの児童を、別居して監護し、生計を同じくしている。児童手当法第4条第1項第1号）</label>
<label><input type="radio" name="basis" value="student_support" id="basis_student"> 大学生等の生計費負担（18歳年度末後22歳年度末までの子に、監護に相当する世話をし、生計費を負担している。児童手当法第6条第1項）</label>
</fieldset>
<label for="apart_since">監護・負担を始めた日（和暦または西暦）</label><input id="apart_since" name="since" required>
<label for="apart_requested_on">額改定請求の日（和暦または西暦）</label><input id="apart_requested_on" name="requested_on" value="{today}" required>
<label><input type="checkbox" name="fifteen_day_rule" value="1" id="apart_fifteen"> 住所変更・災害などやむを得ない理由の後15日以内の請求（その翌月分から。児童手当法第9条第2項・第8条第3項）</label>
<p><button type="submit" id="apart-submit">児童を加える</button></p></form>"#,
        id = c.id,
        csrf = esc(&sess.csrf),
        today = esc(&s.wareki(s.today())),
    );
    let current: Vec<&crate::store::ChildRow> =
        c.children.iter().filter(|x| x.left_on.is_none()).collect();
    if current.is_empty() {
        return b;
    }
    let _ = write!(
        b,
        r#"<h2 id="end">児童の終了（手入力）</h2>
<p>監護や生計費の負担がなくなった子を終了します。事由の発生した月分まで数え、その翌月分から減額します（児童手当法第9条第3項）。すでに支払った月分は過払になります。</p>
<form method="post" action="/claims/{id}/children/end"><input type="hidden" name="csrf" value="{csrf}">
<label for="end_child">児童</label><select id="end_child" name="child">"#,
        id = c.id,
        csrf = esc(&sess.csrf),
    );
    for x in current {
        let _ = write!(
            b,
            r#"<option value="{}">{}（{}生）</option>"#,
            esc(&x.child),
            esc(&x.name),
            s.wareki(x.birth)
        );
    }
    b.push_str(r#"</select><fieldset><legend>終了の事由</legend>"#);
    for (code, ja, _) in END_REASONS {
        let _ = write!(
            b,
            r#"<label><input type="radio" name="reason" value="{code}" id="end_{code}"> {ja}</label>"#
        );
    }
    b.push_str(
        r#"</fieldset><label for="end_on">事由の発生日（和暦または西暦）</label><input id="end_on" name="ended_on" required>
<p><button type="submit" id="end-submit">この児童を終了する</button></p></form>"#,
    );
    b
}

/// The claim's 振込先口座 and the form to record or change it.
fn account_section(sess: &Session, c: &ClaimRow, typed: Option<&AccountFields>) -> String {
    let shown = match &c.account {
        Some(a) => format!(r#"<p id="account">{}</p>"#, esc(&a.words())),
        None if c.public_servant => {
            r#"<p id="account">口座未登録（公務員のため市からの支払はありません）</p>"#.to_string()
        }
        None => r#"<p id="account" class="err">口座未登録：振込先口座を登録するまで、支払ファイルに入れず支払を保留します。</p>"#.to_string(),
    };
    let fields = typed
        .cloned()
        .or_else(|| c.account.as_ref().map(AccountFields::of))
        .unwrap_or_default();
    // A recorded account: the change form folded away (open again after
    // a refused change).
    let (open, close) = if c.account.is_some() && typed.is_none() {
        ("<details><summary>口座を変更する</summary>", "</details>")
    } else {
        ("", "")
    };
    format!(
        r#"<h2 id="bank">振込先口座</h2>{shown}{open}<form method="post" action="/claims/{id}/account"><input type="hidden" name="csrf" value="{csrf}">{inputs}<p><button type="submit" id="account-submit">{label}</button></p></form>{close}"#,
        id = c.id,
        csrf = esc(&sess.csrf),
        inputs = account_inputs(&fields),
        label = if c.account.is_some() {
            "口座を変更する"
        } else {
            "口座を登録する"
        },
    )
}

/// What was filed online for a claim entered from a filing (電子申請の
/// 内容), and for each filed child who lives apart, a form to add them
/// (別居監護) with name and birth date as filed: the clerk confirms.
fn filed_section(
    s: &WebState,
    sess: &Session,
    c: &ClaimRow,
    filed: &[(String, Vec<String>)],
) -> String {
    let mut b = String::from(r#"<h2 id="filed">電子申請の内容</h2>"#);
    if filed.is_empty() {
        b.push_str("<p>申請の内容を住民記録システムから読めませんでした。</p>");
        return b;
    }
    b.push_str(r#"<dl id="filed-answers">"#);
    for (label, values) in filed {
        let _ = write!(
            b,
            "<dt>{}</dt><dd>{}</dd>",
            esc(label),
            values
                .iter()
                .map(|x| esc(x))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    b.push_str("</dl>");
    if c.ended_on.is_some() {
        return b;
    }
    let apart: Vec<FiledChild> = filed_children(&s.eras, filed)
        .into_iter()
        .filter(|x| x.lives_with == Some(false))
        .filter(|x| {
            !c.children
                .iter()
                .any(|y| fold(&y.name) == fold(&x.name) && Some(y.birth) == x.birth)
        })
        .collect();
    if apart.is_empty() {
        return b;
    }
    b.push_str(r#"<h3 id="filed-apart">申請で別居とされたお子さん</h3><p>内容を確かめ、監護を始めた日を入力して加えてください（別居監護。児童手当法第4条第1項第1号）。請求日は認定請求の日です。</p>"#);
    for (i, x) in apart.iter().enumerate() {
        let _ = write!(
            b,
            r#"<form method="post" action="/claims/{id}/children/apart" id="filed-child-{i}"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="basis" value="separate_care"><input type="hidden" name="requested_on" value="{req}">
<p>{name}（{birth}）</p>
<label for="filed_name_{i}">氏名</label><input id="filed_name_{i}" name="name" value="{name}">
<label for="filed_birth_{i}">生年月日</label><input id="filed_birth_{i}" name="birth" value="{birth}">
<label for="filed_since_{i}">監護を始めた日（和暦または西暦）</label><input id="filed_since_{i}" name="since" required>
<p><button type="submit" id="filed-child-submit-{i}">{name}を別居監護の児童として加える</button></p></form>"#,
            id = c.id,
            csrf = esc(&sess.csrf),
            req = esc(&s.wareki(c.claimed_on)),
            name = esc(&x.name),
            birth = x.birth.map(|d| s.wareki(d)).unwrap_or_default(),
        );
    }
    b
}

#[derive(Deserialize)]
struct BankForm {
    csrf: String,
    #[serde(flatten)]
    account: AccountFields,
}

/// Records or changes a claim's 振込先口座 (logged, with the claim).
async fn account_set(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<BankForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let c = match claim_or_404(&s, &sess, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let refuse = |ja: &str, en: &str| {
        let mut r = page(
            "口座を登録できませんでした",
            Some(&sess),
            &format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p><p>何も登録していません。 <span lang="en">Nothing was changed.</span></p>{}<p><a href="/claims/{id}">受給者の画面へ戻る</a></p>"#,
                esc(ja),
                esc(en),
                account_section(&sess, &c, Some(&f.account)),
            ),
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    match set_account(&s, &sess.login, &ctx.source, id, &f.account).await {
        Ok(()) => Redirect::to(&format!("/claims/{id}#bank")).into_response(),
        Err(r) if r.status == StatusCode::UNPROCESSABLE_ENTITY => refuse(&r.ja, &r.en),
        Err(r) => refusal_page(&sess, id, &r),
    }
}

/// Records or changes a claim's 振込先口座 (the page and the API alike):
/// each field checked ([`BankAccount::check`]), nothing written on a
/// refusal; logged with the claim (登録 or 変更) in the same transaction.
pub async fn set_account(
    s: &WebState,
    clerk: &str,
    source: &str,
    id: i64,
    input: &AccountFields,
) -> Result<(), Refusal> {
    let c = match s.store.claim(id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "not_found",
                "その受給者はいません。",
                "No such claim.",
            ));
        }
        Err(e) => return Err(store_refusal(e)),
    };
    let account = match input.check() {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Err(invalid(
                "missing_account",
                "振込先口座を入力してください。",
                "Enter the bank account.",
            ));
        }
        Err(e) => return Err(invalid(e.code, &e.ja, &e.en)),
    };
    let log = Entry::new(clerk, source, Action::BankAccountSet, format!("claim:{id}")).detail(
        if c.account.is_some() {
            "変更"
        } else {
            "登録"
        },
    );
    match s.store.set_bank_account(id, account, log).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        )),
        Err(e) => Err(store_refusal(e)),
    }
}

/// The 未支払請求 form as typed (the child chosen from the claim's
/// children, never typed).
#[derive(Debug, Clone, Default, Deserialize)]
struct UnpaidForm {
    csrf: String,
    #[serde(default)]
    child: String,
    #[serde(default)]
    requester_name: String,
    #[serde(default)]
    requester_kana: String,
    #[serde(default)]
    requested_on: String,
    #[serde(flatten)]
    account: AccountFields,
}

/// 未支払の手当 (児童手当法第12条第1項) on the page of a claim ended by the
/// claimant's death: what is held, and the 未支払請求 — recorded (who,
/// for which child, into which account, when; what was paid on it) or
/// the form to record it. `typed`: the form as typed after a refusal.
fn unpaid_section(
    s: &WebState,
    sess: &Session,
    c: &ClaimRow,
    next: &[PaymentLine],
    unpaid: Option<&crate::store::UnpaidClaim>,
    paid_to_child: &[(YearMonth, i64, i64)],
    typed: Option<&UnpaidForm>,
) -> String {
    let Some(end) = c.ended_on else {
        return String::new();
    };
    let mut b = String::from(r#"<h2 id="unpaid">未支払の手当（受給者の死亡）</h2>"#);
    let _ = write!(
        b,
        "<p>受給者は{}に亡くなりました。まだ支払っていない手当は、亡くなった受給者の口座には振り込まず、未支払請求を受けて児童（児童であった方）に支払います（児童手当法第12条第1項）。</p>",
        s.wareki(end)
    );
    let name_of = |k: &str| {
        c.children
            .iter()
            .find(|x| x.child == k)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| "児童".into())
    };
    if let Some(u) = unpaid {
        let _ = write!(
            b,
            r#"<p id="unpaid-claim">{}に{}の未支払請求を受け付けました。請求者：{}（{}）。振込先口座：{}。</p>"#,
            s.wareki(u.requested_on),
            esc(&name_of(&u.child)),
            esc(&u.requester_name),
            esc(&u.requester_kana),
            esc(&u.account.words())
        );
    }
    if !paid_to_child.is_empty() {
        let total: i64 = paid_to_child.iter().map(|x| x.1).sum();
        let ms: Vec<String> = paid_to_child.iter().map(|x| s.month(x.0)).collect();
        let runs: std::collections::BTreeSet<i64> = paid_to_child.iter().map(|x| x.2).collect();
        let _ = write!(
            b,
            r#"<p id="unpaid-paid">{}分 {}を、未支払として請求者の口座に支払いました（{}）。同じ月分を二度支払うことはありません。</p>"#,
            ms.join("・"),
            yen(total),
            runs.iter()
                .map(|r| format!(r#"<a href="/payments/runs/{r}">支払ファイル第{r}号</a>"#))
                .collect::<Vec<_>>()
                .join("・")
        );
    }
    if !next.is_empty() {
        let total: i64 = next.iter().map(|l| l.amount).sum();
        let ms: Vec<String> = next
            .iter()
            .flat_map(|l| l.months.iter())
            .filter_map(|m| YearMonth::parse(m))
            .map(|m| s.month(m))
            .collect();
        if unpaid.is_some() {
            let _ = write!(
                b,
                r#"<p id="unpaid-open">{}分 {}は、次の支払ファイルで請求者の口座に支払います。</p>"#,
                ms.join("・"),
                yen(total)
            );
        } else {
            let _ = write!(
                b,
                r#"<p id="unpaid-open" class="err">未支払請求待ち：{}分 {}の支払を止めています。未支払請求を記録すると、次の支払ファイルで請求者の口座に一度だけ支払います。</p>"#,
                ms.join("・"),
                yen(total)
            );
        }
    }
    if unpaid.is_some() || unpaid_children(c).next().is_none() {
        return b;
    }
    let t = typed.cloned().unwrap_or_default();
    let options: String = unpaid_children(c)
        .map(|x| {
            format!(
                r#"<option value="{}"{}>{}（{}生）</option>"#,
                esc(&x.child),
                if t.child == x.child { " selected" } else { "" },
                esc(&x.name),
                s.wareki(x.birth)
            )
        })
        .collect();
    let kind = if t.account.account_kind.is_empty() {
        "ordinary"
    } else {
        t.account.account_kind.as_str()
    };
    let _ = write!(
        b,
        r#"<h3 id="unpaid-form-h">未支払請求を記録する</h3><form method="post" action="/claims/{id}/unpaid" aria-labelledby="unpaid-form-h"><input type="hidden" name="csrf" value="{csrf}">
<label for="unpaid_child">支払を受ける児童</label><select id="unpaid_child" name="child">{options}</select>
<label for="unpaid_requester_name">請求者の氏名（児童本人、または児童に代わって請求する方）</label><input id="unpaid_requester_name" name="requester_name" value="{rn}" autocomplete="off">
<label for="unpaid_requester_kana">請求者の氏名（カタカナ）</label><input id="unpaid_requester_kana" name="requester_kana" value="{rk}" autocomplete="off">
<fieldset id="unpaid-account"><legend>振込先口座（児童の口座、または児童のために請求者が指定する口座）</legend>
<label for="unpaid_bank_code">金融機関コード（4桁）</label><input id="unpaid_bank_code" name="bank_code" value="{bank}" inputmode="numeric" maxlength="4" autocomplete="off">
<label for="unpaid_branch_code">支店コード（3桁）</label><input id="unpaid_branch_code" name="branch_code" value="{branch}" inputmode="numeric" maxlength="3" autocomplete="off">
<fieldset><legend>預金種目</legend><label><input type="radio" name="account_kind" value="ordinary" id="unpaid_account_ordinary"{o}> 普通</label>
<label><input type="radio" name="account_kind" value="current" id="unpaid_account_current"{cu}> 当座</label></fieldset>
<label for="unpaid_account_number">口座番号（7桁）</label><input id="unpaid_account_number" name="account_number" value="{num}" inputmode="numeric" maxlength="7" autocomplete="off">
<label for="unpaid_account_holder">口座名義（カタカナ。ひらがなで入力してもカタカナにします）</label><input id="unpaid_account_holder" name="account_holder" value="{holder}" autocomplete="off">
</fieldset>
<label for="unpaid_requested_on">請求日（和暦または西暦）</label><input id="unpaid_requested_on" name="requested_on" value="{req}" required>
<p><button type="submit" id="unpaid-submit">未支払請求を記録する</button></p></form>"#,
        id = c.id,
        csrf = esc(&sess.csrf),
        rn = esc(&t.requester_name),
        rk = esc(&t.requester_kana),
        bank = esc(&t.account.bank_code),
        branch = esc(&t.account.branch_code),
        o = if kind == "ordinary" { " checked" } else { "" },
        cu = if kind == "current" { " checked" } else { "" },
        num = esc(&t.account.account_number),
        holder = esc(&t.account.account_holder),
        req = esc(&if t.requested_on.is_empty() {
            s.wareki(s.today())
        } else {
            t.requested_on.clone()
        }),
    );
    b
}

/// The children a 未支払請求 may name: those the allowance was paid for
/// (児童であつた者), not a 大学生等 only counted towards the rank.
fn unpaid_children(c: &ClaimRow) -> impl Iterator<Item = &crate::store::ChildRow> {
    c.children
        .iter()
        .filter(|x| x.basis != rules::Basis::StudentSupport)
}

/// Checks a 未支払請求 as typed: the child one of the claim's, the
/// 請求者's name (kanji) and kana, the account ([`BankAccount::check`],
/// as for the claimant's), the 請求日 (和暦 or 西暦; not before the death,
/// not in the future). Each refusal names the field in Japanese and
/// English.
fn unpaid_input(
    s: &WebState,
    c: &ClaimRow,
    f: &UnpaidForm,
) -> Result<crate::store::NewUnpaidClaim, Refusal> {
    let Some(end) = c
        .ended_on
        .filter(|_| c.end_reason.as_deref() == Some(crate::store::DEATH))
    else {
        return Err(refused(
            StatusCode::CONFLICT,
            "not_deceased",
            "この受給者は死亡で消滅していないため、未支払請求は記録できません。",
            "This claim did not end by the claimant's death: no claim for unpaid allowance can be recorded.",
        ));
    };
    if !unpaid_children(c).any(|x| x.child == f.child) {
        return Err(invalid(
            "invalid_child",
            "支払を受ける児童を一覧から選んでください。",
            "Choose the child from the list.",
        ));
    }
    let name = machi_domain::names::PersonName::new(f.requester_name.trim()).map_err(|e| {
        invalid(
            "invalid_requester_name",
            &format!("請求者の氏名：{}", e.message_ja()),
            &format!("claimant's name: {}", e.message_en()),
        )
    })?;
    let kana = machi_domain::names::Furigana::from_input(f.requester_kana.trim()).map_err(|e| {
        invalid(
            "invalid_requester_kana",
            &format!("請求者の氏名（カタカナ）：{}", e.message_ja()),
            &format!("claimant's name in katakana: {}", e.message_en()),
        )
    })?;
    let account = match f.account.input().is_empty() {
        true => {
            return Err(invalid(
                "missing_account",
                "振込先口座を入力してください。",
                "Enter the bank account.",
            ));
        }
        false => {
            BankAccount::check(&f.account.input()).map_err(|e| invalid(e.code, &e.ja, &e.en))?
        }
    };
    let on = required_date(&s.eras, &f.requested_on, "請求日", "date of the claim")?;
    if on < end || on > s.today() {
        return Err(invalid(
            "invalid_date",
            &format!(
                "請求日は受給者が亡くなった日（{}）から今日までの日付にしてください。",
                s.wareki(end)
            ),
            "The date of the claim must be between the claimant's death and today.",
        ));
    }
    Ok(crate::store::NewUnpaidClaim {
        child: f.child.clone(),
        requester_name: name.as_str().to_string(),
        requester_kana: kana.as_str().to_string(),
        account,
        requested_on: on,
    })
}

/// Records a 未支払請求 (児童手当法第12条第1項; logged with the claim): the
/// next payment file pays what is held into its account. A refusal
/// changes nothing and shows the form again as typed.
async fn unpaid_record(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<UnpaidForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let c = match claim_or_404(&s, &sess, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let refuse = |r: &Refusal| {
        let form = if r.status == StatusCode::UNPROCESSABLE_ENTITY {
            unpaid_section(&s, &sess, &c, &[], None, &[], Some(&f))
        } else {
            String::new()
        };
        let mut resp = page(
            "未支払請求を記録できませんでした",
            Some(&sess),
            &format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p><p>何も記録していません。 <span lang="en">Nothing was changed.</span></p>{form}<p><a href="/claims/{id}#unpaid">受給者の画面へ戻る</a></p>"#,
                esc(&r.ja),
                esc(&r.en),
            ),
        );
        *resp.status_mut() = r.status;
        resp
    };
    let n = match unpaid_input(&s, &c, &f) {
        Ok(n) => n,
        Err(r) => return refuse(&r),
    };
    let log = ctx
        .entry(&sess, Action::UnpaidClaimRecorded, format!("claim:{id}"))
        .detail(format!(
            "person:{} 請求日{}",
            n.child,
            s.wareki(n.requested_on)
        ));
    match s.store.record_unpaid_claim(id, n, log).await {
        Ok(Ok(_)) => Redirect::to(&format!("/claims/{id}#unpaid")).into_response(),
        Ok(Err(e)) => {
            use crate::store::UnpaidRefused::*;
            let r = match e {
                NoClaim => refused(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "その受給者はいません。",
                    "No such claim.",
                ),
                NotDeceased => refused(
                    StatusCode::CONFLICT,
                    "not_deceased",
                    "この受給者は死亡で消滅していないため、未支払請求は記録できません。",
                    "This claim did not end by the claimant's death.",
                ),
                NotOnClaim => invalid(
                    "invalid_child",
                    "支払を受ける児童を一覧から選んでください。",
                    "Choose the child from the list.",
                ),
                AlreadyRecorded => refused(
                    StatusCode::CONFLICT,
                    "already_recorded",
                    "この受給者の未支払請求はすでに記録されています。",
                    "A claim for the unpaid allowance is recorded for this claimant already.",
                ),
            };
            refuse(&r)
        }
        Err(e) => internal(e),
    }
}

/// A refusal on a page: both languages, a way back to the claim.
fn refusal_page(sess: &Session, claim_id: i64, r: &Refusal) -> Response {
    let mut resp = page(
        "入力できませんでした",
        Some(sess),
        &format!(
            r#"<p class="err" role="alert" id="error">{}<br lang="en"><span lang="en">{}</span></p><p>何も登録していません。 <span lang="en">Nothing was changed.</span></p><p><a href="/claims/{claim_id}#apart">受給者の画面へ戻る</a></p>"#,
            esc(&r.ja),
            esc(&r.en)
        ),
    );
    *resp.status_mut() = r.status;
    resp
}

#[derive(Deserialize)]
struct ApartForm {
    csrf: String,
    #[serde(default)]
    addressee_number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    birth: String,
    #[serde(default)]
    basis: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    requested_on: String,
    #[serde(default)]
    fifteen_day_rule: Option<String>,
}

async fn apart_add(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ApartForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let input = ApartInput {
        addressee_number: f.addressee_number,
        name: f.name,
        birth: f.birth,
        basis: f.basis,
        since: f.since,
        requested_on: f.requested_on,
        fifteen_day_rule: f.fifteen_day_rule.is_some(),
    };
    match add_apart_child(&s, &sess.login, &ctx.source, id, &input).await {
        Ok(_) => Redirect::to(&format!("/claims/{id}#children")).into_response(),
        Err(r) => refusal_page(&sess, id, &r),
    }
}

#[derive(Deserialize)]
struct EndForm {
    csrf: String,
    #[serde(default)]
    child: String,
    #[serde(default)]
    ended_on: String,
    #[serde(default)]
    reason: String,
}

async fn child_end(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<EndForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let input = EndInput {
        child: f.child,
        ended_on: f.ended_on,
        reason: f.reason,
    };
    match end_child(&s, &sess.login, &ctx.source, id, &input).await {
        Ok(_) => Redirect::to(&format!("/claims/{id}#children")).into_response(),
        Err(r) => refusal_page(&sess, id, &r),
    }
}

#[derive(Deserialize)]
struct SupportForm {
    csrf: String,
    child: String,
    supported: String,
}

async fn support_set(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<SupportForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let log = ctx
        .entry(&sess, Action::SupportSet, format!("claim:{id}"))
        .detail(format!(
            "person:{} {}",
            f.child,
            if f.supported == "1" {
                "負担あり"
            } else {
                "負担なし"
            }
        ));
    match s
        .store
        .set_supported(id, f.child, f.supported == "1", log)
        .await
    {
        Ok(_) => Redirect::to(&format!("/claims/{id}")).into_response(),
        Err(e) => internal(e),
    }
}

async fn payments_index(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = signed_in!(ctx);
    let runs = match s.store.payment_runs().await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let now = YearMonth::of(s.today());
    let mut p = rules::payment_month(now.plus(-1));
    let mut b = String::from(
        r#"<h2 id="schedule">支払予定</h2><table aria-labelledby="schedule"><thead><tr><th scope="col">支払月</th><th scope="col">対象月</th><th scope="col">支払明細</th></tr></thead><tbody>"#,
    );
    p = p.plus(-4);
    for _ in 0..6 {
        if let Some([a, z]) = rules::months_paid_in(p) {
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>{}・{}</td><td><a href="/payments/{}">明細を見る</a></td></tr>"#,
                s.month(p),
                s.month(a),
                s.month(z),
                p.iso()
            );
        }
        p = p.plus(2);
    }
    b.push_str("</tbody></table>");
    b.push_str(r#"<p><a href="/payments/special" id="special">消滅時の随時払（死亡・転出で受給資格が消滅した方の未払分）</a></p>"#);
    b.push_str(r#"<h2 id="runs">確定した支払ファイル</h2>"#);
    if runs.is_empty() {
        b.push_str("<p>確定した支払ファイルはまだありません。</p>");
    } else {
        b.push_str(&runs_table(&s, &runs));
    }
    page("支払", Some(&sess), &b)
}

fn rule_ja(r: PayRule) -> &'static str {
    match r {
        PayRule::Regular => "定例払",
        PayRule::OnEnd => "消滅時の随時払",
        PayRule::Arrears => "過去分",
        PayRule::Refund => "還付",
        PayRule::Unpaid => "未支払（児童への支払）",
    }
}

/// A UTC time as a person reads it: 和暦 date and time in Japan.
fn when(s: &WebState, at: chrono::DateTime<chrono::Utc>) -> String {
    let jst = at + chrono::Duration::hours(9);
    let t = jst.naive_utc();
    format!(
        "{} {}時{:02}分{:02}秒",
        s.wareki(t.date()),
        chrono::Timelike::hour(&t),
        chrono::Timelike::minute(&t),
        chrono::Timelike::second(&t)
    )
}

fn runs_table(s: &WebState, runs: &[crate::store::PaymentRun]) -> String {
    let mut b = String::from(
        r#"<table aria-labelledby="runs"><thead><tr><th scope="col">支払ファイル</th><th scope="col">種類</th><th scope="col">支払月</th><th scope="col">確定</th><th scope="col">件数</th><th scope="col">合計</th></tr></thead><tbody>"#,
    );
    for r in runs {
        let _ = write!(
            b,
            r#"<tr><td><a href="/payments/runs/{id}">第{id}号</a></td><td>{}</td><td>{}</td><td>{}（{}）</td><td class="n">{}件</td><td class="n">{}</td></tr>"#,
            rule_ja(r.rule),
            s.month(r.pay_month),
            when(s, r.made_at),
            esc(&r.approved_by),
            r.lines,
            yen(r.total),
            id = r.id,
        );
    }
    b.push_str("</tbody></table>");
    b
}

/// The lines a regular payment in month `p` would pay now (months already
/// in a payment file are left out).
pub async fn payment_lines(
    store: &Store,
    p: YearMonth,
) -> Result<Vec<PaymentLine>, crate::store::StoreError> {
    store.due(PayRule::Regular, p.first_day()).await
}

fn payment_month_param(raw: &str) -> Option<YearMonth> {
    let m = YearMonth::parse(raw)?;
    rules::months_paid_in(m).map(|_| m)
}

fn lines_table(s: &WebState, lines: &[PaymentLine], caption: &str) -> String {
    let withheld: i64 = lines.iter().map(|l| l.offset).sum();
    let mut b = format!(
        r#"<table aria-labelledby="lines-h"><caption id="lines-h">{}</caption><thead><tr><th scope="col">受給者</th><th scope="col">対象月</th><th scope="col">支払額</th>{}</tr></thead><tbody>"#,
        esc(caption),
        if withheld > 0 {
            r#"<th scope="col">過払の差引（内払調整）</th><th scope="col">振込額</th>"#
        } else {
            ""
        }
    );
    let mut total = 0;
    for l in lines {
        total += l.amount - l.offset;
        let months: Vec<String> = l
            .months
            .iter()
            .filter_map(|m| YearMonth::parse(m))
            .map(|m| s.month(m))
            .collect();
        let _ = write!(
            b,
            r#"<tr><td><a href="/claims/{}">{}</a></td><td>{}{}</td><td class="n">{}</td>{}</tr>"#,
            l.claim_id,
            esc(&l.claimant_name),
            match l.rule {
                PayRule::Arrears => "過去分：",
                PayRule::Refund => "還付（過払の取消し）：",
                PayRule::Unpaid =>
                    "未支払（受給者死亡のため未支払請求をした児童に支払。児童手当法第12条第1項）：",
                _ => "",
            },
            months.join("・"),
            yen(l.amount),
            if withheld > 0 {
                format!(
                    r#"<td class="n">{}</td><td class="n">{}</td>"#,
                    if l.offset > 0 {
                        format!("−{}", yen(l.offset))
                    } else {
                        "なし".into()
                    },
                    yen(l.amount - l.offset)
                )
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        b,
        r#"</tbody></table><p id="total">合計 {}（{}件）</p>"#,
        yen(total),
        lines.len()
    );
    let refunded: i64 = lines
        .iter()
        .filter(|l| l.rule == PayRule::Refund)
        .map(|l| l.amount)
        .sum();
    if refunded > 0 {
        let _ = write!(
            b,
            r#"<p id="refunds">うち還付 {}：過払の原因となった異動が取り消されたため、支払から差し引いた額・返還を受けた額を受給者の口座に支払います（児童手当法第13条・第8条第4項）。確定すると、同じ額を次の支払ファイルで再び支払うことはありません。</p>"#,
            yen(refunded)
        );
    }
    if withheld > 0 {
        let _ = write!(
            b,
            r#"<p id="withheld">過払の差引 {}：支払った後に手当額が下がった月分を、この支払から差し引きます（内払調整、児童手当法第13条）。差し引ききれない額は返還を求めます。</p>"#,
            yen(withheld)
        );
    }
    b
}

/// Whether a claim's lines are held for a 未支払請求 (its claimant died):
/// its 還付 line, if any, waits with them.
fn claim_waits(held: &[PaymentLine], claim_id: i64) -> bool {
    held.iter()
        .any(|l| l.claim_id == claim_id && l.rule == PayRule::Unpaid)
}

/// The lines held because the claimant died and no 未支払請求 is recorded
/// yet (児童手当法第12条第1項): not paid into the dead claimant's account.
fn unpaid_waiting_section(s: &WebState, lines: &[&PaymentLine]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut b = String::from(
        r#"<h2 id="unpaid-waiting">未支払請求待ち（受給者が亡くなった方）</h2><p>受給者が亡くなったため、まだ支払っていない手当は亡くなった受給者の口座には振り込みません。児童（児童であった方）に支払います（児童手当法第12条第1項）。児童本人またはその代わりの方から未支払請求を受けたら、受給者の画面で請求者と振込先口座を記録してください。記録した後の支払ファイルで、その口座に一度だけ支払います。</p><table aria-labelledby="unpaid-waiting"><thead><tr><th scope="col">亡くなった受給者</th><th scope="col">対象月</th><th scope="col">支払を待つ額</th></tr></thead><tbody>"#,
    );
    for l in lines {
        let months: Vec<String> = l
            .months
            .iter()
            .filter_map(|m| YearMonth::parse(m))
            .map(|m| s.month(m))
            .collect();
        let _ = write!(
            b,
            r##"<tr><td><a href="/claims/{}#unpaid">{}</a>（未支払請求待ち）</td><td>{}{}</td><td class="n">{}</td></tr>"##,
            l.claim_id,
            esc(&l.claimant_name),
            if l.rule == PayRule::Refund {
                "還付（過払の取消し）："
            } else {
                ""
            },
            months.join("・"),
            yen(l.amount)
        );
    }
    b.push_str("</tbody></table>");
    b
}

/// The claims a payment file holds out because they have no 振込先口座
/// (口座未登録): not in the file, not recorded as paid; they stay due and
/// are paid by the first file made after an account is entered.
fn held_section(s: &WebState, held: &[PaymentLine]) -> String {
    let (waiting, held): (Vec<&PaymentLine>, Vec<&PaymentLine>) = held
        .iter()
        .partition(|l| l.rule == PayRule::Unpaid || claim_waits(held, l.claim_id));
    let mut b = unpaid_waiting_section(s, &waiting);
    if held.is_empty() {
        return b;
    }
    b.push_str(
        r#"<h2 id="held">口座未登録のため支払を保留する受給者</h2><p>振込先口座がないため、この支払ファイルには入れません（振込額なし）。受給者の画面で口座を登録すると、次の支払ファイルで支払います。</p><table aria-labelledby="held"><thead><tr><th scope="col">受給者</th><th scope="col">対象月</th><th scope="col">保留する額</th></tr></thead><tbody>"#,
    );
    for l in held {
        let months: Vec<String> = l
            .months
            .iter()
            .filter_map(|m| YearMonth::parse(m))
            .map(|m| s.month(m))
            .collect();
        let _ = write!(
            b,
            r##"<tr><td><a href="/claims/{}#bank">{}</a>（口座未登録）</td><td>{}{}</td><td class="n">{}</td></tr>"##,
            l.claim_id,
            esc(&l.claimant_name),
            match l.rule {
                PayRule::Arrears => "過去分：",
                PayRule::Refund => "還付（過払の取消し）：",
                PayRule::Unpaid =>
                    "未支払（受給者死亡のため未支払請求をした児童に支払。児童手当法第12条第1項）：",
                _ => "",
            },
            months.join("・"),
            yen(l.amount)
        );
    }
    b.push_str("</tbody></table>");
    b
}

/// The lines of a payment file whose claim has a person the registry
/// hides from this system (支援措置, j440; an open
/// [`crate::store::WorkKind::RecordHidden`] item): paid on the last data read unless
/// the clerk confirms the facts first. Said before the file is approved,
/// never left to be found later.
fn hidden_section(lines: &[PaymentLine], work: &[crate::store::WorkItem]) -> String {
    let open: Vec<&crate::store::WorkItem> = work
        .iter()
        .filter(|w| w.kind == crate::store::WorkKind::RecordHidden)
        .collect();
    let mut rows = String::new();
    let mut seen = Vec::new();
    for l in lines {
        if seen.contains(&l.claim_id) {
            continue;
        }
        let names: Vec<String> = open
            .iter()
            .filter(|w| w.claim_id == Some(l.claim_id))
            .map(|w| esc(&w.person_name))
            .collect();
        if names.is_empty() {
            continue;
        }
        seen.push(l.claim_id);
        let _ = write!(
            rows,
            r##"<tr><td><a href="/claims/{}">{}</a></td><td>{}</td></tr>"##,
            l.claim_id,
            esc(&l.claimant_name),
            names.join("、")
        );
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        r#"<h2 id="hidden">住民記録で確認できない方がいる受給者</h2><p role="note">支援措置のため、次の方の住民記録の異動（転出・世帯の異動など）はこのシステムに届きません。この支払ファイルは最後に確認できた内容で計算しています。確定する前に窓口で世帯と監護の状況を確認し、児童が監護を離れていれば受給者の画面で終了してください。</p><table aria-labelledby="hidden"><thead><tr><th scope="col">受給者</th><th scope="col">確認できない方</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

fn approve_form(sess: &Session, action: &str, label: &str) -> String {
    if !sess.role.supervises() {
        return "<p>支払ファイルの確定と出力は児童手当監督者が行います。</p>".into();
    }
    format!(
        r#"<form method="post" action="{action}"><input type="hidden" name="csrf" value="{}"><p><button type="submit" id="approve">{}</button></p></form>"#,
        esc(&sess.csrf),
        esc(label)
    )
}

async fn payment_page(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    let sess = signed_in!(ctx);
    let Some(p) = payment_month_param(&raw) else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "支払月は偶数月（2月・4月・6月・8月・10月・12月）です。支払ファイルは確定した後、支払ファイルの画面から出力します。",
            "Payment months are February, April, June, August, October and December; a payment file is exported once approved.",
        );
    };
    let (lines, runs) = match (
        payment_lines(&s.store, p).await,
        s.store.payment_runs().await,
    ) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    logged!(
        s,
        ctx.entry(&sess, Action::PaymentRead, format!("month:{}", p.iso()))
            .detail(format!("{}件", lines.len()))
    );
    let [a, z] = rules::months_paid_in(p).expect("checked");
    let mut b = format!(
        "<p>{}・{}分の定例払（児童手当法第8条第4項本文）。公務員は所属庁が支給するため含みません。すでに支払ファイルに入った月（消滅時の随時払を含む）は除きます。</p>",
        s.month(a),
        s.month(z)
    );
    b.push_str(&lines_table(&s, &lines, "未払の支払明細"));
    match s.store.work_items(true).await {
        Ok(w) => b.push_str(&hidden_section(&lines, &w)),
        Err(e) => return internal(e),
    }
    match s.store.held(PayRule::Regular, p.first_day()).await {
        Ok(h) => b.push_str(&held_section(&s, &h)),
        Err(e) => return internal(e),
    }
    if !lines.is_empty() {
        b.push_str(&approve_form(
            &sess,
            &format!("/payments/{}", p.iso()),
            "この内容で支払ファイルを確定する",
        ));
    }
    let made: Vec<_> = runs.into_iter().filter(|r| r.pay_month == p).collect();
    if !made.is_empty() {
        b.push_str(r#"<h2 id="runs">この月に確定した支払ファイル</h2>"#);
        b.push_str(&runs_table(&s, &made));
    }
    page(&format!("{}の支払", s.month(p)), Some(&sess), &b)
}

/// Records a payment file (supervisor): the months it pays are never paid
/// again.
async fn approve(
    s: &WebState,
    ctx: &Ctx,
    sess: &Session,
    rule: PayRule,
    on: NaiveDate,
) -> Response {
    let log = ctx.entry(sess, Action::PaymentApproved, "");
    match s.store.approve_payment(rule, on, log).await {
        Ok(Some(run)) => Redirect::to(&format!("/payments/runs/{}", run.id)).into_response(),
        Ok(None) => error_page(
            Some(sess),
            StatusCode::CONFLICT,
            "支払うものはありません（すでに支払ファイルに入っています）。",
            "Nothing to pay: every month due is in a payment file already.",
        ),
        Err(e) => internal(e),
    }
}

async fn payment_approve(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let sess = supervisor!(Ctx {
        sess: Some(sess),
        source: ctx.source.clone()
    });
    let Some(p) = payment_month_param(&raw) else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "支払月は偶数月（2月・4月・6月・8月・10月・12月）です。",
            "Payment months are February, April, June, August, October and December.",
        );
    };
    // Made at the earliest in the month before the payment month (both
    // months paid have begun).
    if p > YearMonth::of(s.today()).plus(1) {
        return error_page(
            Some(&sess),
            StatusCode::UNPROCESSABLE_ENTITY,
            "この支払月の支払ファイルはまだ確定できません（支払月の前月から確定できます）。",
            "This payment month's file cannot be approved yet (from the month before it).",
        );
    }
    approve(&s, &ctx, &sess, PayRule::Regular, p.first_day()).await
}

async fn special_page(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = signed_in!(ctx);
    let today = s.today();
    let lines = match s.store.due(PayRule::OnEnd, today).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    logged!(
        s,
        ctx.entry(&sess, Action::PaymentRead, "special")
            .detail(format!("{}件", lines.len()))
    );
    let mut b = format!(
        "<p>{}</p><p>{}現在、死亡・転出で受給資格が消滅した方の、まだ支払ファイルに入っていない月分（{}分から消滅の月分まで）です。確定すると、次の定例払には含まれません。</p>",
        esc(PayRule::OnEnd.explain_ja()),
        s.wareki(today),
        s.month(rules::first_month_not_yet_due(YearMonth::of(today)))
    );
    b.push_str(&lines_table(&s, &lines, "随時払の明細"));
    match s.store.held(PayRule::OnEnd, today).await {
        Ok(h) => b.push_str(&held_section(&s, &h)),
        Err(e) => return internal(e),
    }
    if !lines.is_empty() {
        b.push_str(&approve_form(
            &sess,
            "/payments/special",
            "随時払の支払ファイルを確定する",
        ));
    }
    page("消滅時の随時払", Some(&sess), &b)
}

async fn special_approve(State(s): State<WebState>, ctx: Ctx, Form(f): Form<CsrfForm>) -> Response {
    let sess = posted!(ctx, f.csrf);
    let sess = supervisor!(Ctx {
        sess: Some(sess),
        source: ctx.source.clone()
    });
    approve(&s, &ctx, &sess, PayRule::OnEnd, s.today()).await
}

/// A recorded payment file: its page (both roles) or its CSV (`.csv`,
/// supervisors only; every download logged).
async fn run_page(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    let sess = signed_in!(ctx);
    let (id, csv) = match raw.strip_suffix(".csv") {
        Some(x) => (x.parse::<i64>().ok(), true),
        None => (raw.parse::<i64>().ok(), false),
    };
    let run = match id {
        Some(id) => match s.store.payment_run(id).await {
            Ok(r) => r,
            Err(e) => return internal(e),
        },
        None => None,
    };
    let Some(run) = run else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "その支払ファイルはありません。",
            "No such payment file.",
        );
    };
    let lines = match s.store.run_lines(run.id).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    if csv {
        let sess = supervisor!(ctx);
        logged!(
            s,
            ctx.entry(&sess, Action::PaymentExported, format!("run:{}", run.id))
                .detail(format!("{}件 {}", lines.len(), yen(run.total)))
        );
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
            "受給者番号",
            "宛名番号",
            "氏名",
            "支払月",
            "対象月",
            "支払額",
            "支払の根拠",
            "内払調整額（児童手当法第13条）",
            "振込額",
            "金融機関コード",
            "支店コード",
            "預金種目",
            "口座番号",
            "口座名義",
        ]);
        for l in &lines {
            let basis = match l.rule {
                PayRule::Regular => "定例払（児童手当法第8条第4項本文）",
                PayRule::OnEnd => "消滅時の随時払（児童手当法第8条第4項ただし書）",
                PayRule::Arrears => "過去分（児童手当法第8条第4項）",
                PayRule::Refund => "還付（過払の取消し。児童手当法第13条・第8条第4項）",
                PayRule::Unpaid => "未支払（児童手当法第12条第1項）",
            };
            let _ = w.write_record([
                l.claim_id.to_string(),
                l.claimant.clone(),
                l.claimant_name.clone(),
                run.pay_month.iso(),
                l.months.join(" "),
                l.amount.to_string(),
                basis.to_string(),
                l.offset.to_string(),
                (l.amount - l.offset).to_string(),
                l.account
                    .as_ref()
                    .map(|a| a.bank.clone())
                    .unwrap_or_default(),
                l.account
                    .as_ref()
                    .map(|a| a.branch.clone())
                    .unwrap_or_default(),
                l.account
                    .as_ref()
                    .map(|a| a.kind.label_ja().to_string())
                    .unwrap_or_default(),
                l.account
                    .as_ref()
                    .map(|a| a.number.clone())
                    .unwrap_or_default(),
                l.account
                    .as_ref()
                    .map(|a| a.holder.clone())
                    .unwrap_or_default(),
            ]);
        }
        let body = w.into_inner().unwrap_or_default();
        let mut r = (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"jidou-teate-{}-{}.csv\"",
                        run.pay_month.iso(),
                        run.id
                    ),
                ),
            ],
            body,
        )
            .into_response();
        secure_headers(&mut r);
        return r;
    }
    logged!(
        s,
        ctx.entry(&sess, Action::PaymentRead, format!("run:{}", run.id))
    );
    let mut b = format!(
        r#"<dl><dt>種類</dt><dd id="rule">{}</dd><dt>支払の根拠</dt><dd>{}</dd><dt>支払月</dt><dd>{}</dd><dt>確定</dt><dd>{}（{}）</dd></dl>"#,
        rule_ja(run.rule),
        esc(run.rule.explain_ja()),
        s.month(run.pay_month),
        when(&s, run.made_at),
        esc(&run.approved_by)
    );
    b.push_str(&lines_table(&s, &lines, "支払明細"));
    if sess.role.supervises() {
        let _ = write!(
            b,
            r#"<p><a href="/payments/runs/{}.csv" id="csv">支払ファイル（CSV）をダウンロード</a></p>"#,
            run.id
        );
    }
    page(&format!("支払ファイル 第{}号", run.id), Some(&sess), &b)
}

// ------------------------------------------------------------------ accounts

async fn accounts_page(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = supervisor!(ctx);
    accounts_view(&s, &sess, None, StatusCode::OK).await
}

async fn accounts_view(
    s: &WebState,
    sess: &Session,
    msg: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let list = match s.store.accounts().await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let mut b = msg
        .map(|(ja, en)| {
            format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p>"#,
                esc(ja),
                esc(en)
            )
        })
        .unwrap_or_default();
    b.push_str(r#"<table aria-labelledby="acc-h"><caption id="acc-h">職員アカウント</caption><thead><tr><th scope="col">ログインID</th><th scope="col">氏名</th><th scope="col">役割</th><th scope="col">状態</th><th scope="col">変更</th></tr></thead><tbody>"#);
    for a in &list {
        let id = format!("role-{}", a.login);
        let _ = write!(
            b,
            r#"<tr><td>{login}</td><td>{name}</td><td>{role}</td><td>{state}</td><td><form method="post" action="/accounts/{login}"><input type="hidden" name="csrf" value="{csrf}"><label for="{id}">役割</label><select id="{id}" name="role"><option value="clerk"{c}>児童手当担当</option><option value="supervisor"{v}>児童手当監督者</option></select><label><input type="checkbox" name="disabled" value="1"{d}> 利用停止</label><button type="submit">変更する</button></form>{reset}</td></tr>"#,
            login = esc(&a.login),
            name = esc(&a.display_name),
            role = a.role.label_ja(),
            state = if a.disabled {
                "利用停止"
            } else {
                "利用中"
            },
            csrf = esc(&sess.csrf),
            id = esc(&id),
            c = if a.role == Role::Clerk {
                " selected"
            } else {
                ""
            },
            v = if a.role == Role::Supervisor {
                " selected"
            } else {
                ""
            },
            d = if a.disabled { " checked" } else { "" },
            reset = if a.login == sess.login {
                String::new()
            } else {
                format!(
                    r#"<form method="post" action="/accounts/{}/reset"><input type="hidden" name="csrf" value="{}"><button type="submit" id="reset-{}">一時パスワードを発行する</button></form>"#,
                    esc(&a.login),
                    esc(&sess.csrf),
                    esc(&a.login)
                )
            },
        );
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        r#"<h2 id="new-h">アカウントの追加</h2><form method="post" action="/accounts" aria-labelledby="new-h"><input type="hidden" name="csrf" value="{}">
<label for="new-login">ログインID（英数字）</label><input id="new-login" name="login" required autocomplete="off">
<label for="new-name">氏名</label><input id="new-name" name="name" required autocomplete="off">
<label for="new-role">役割</label><select id="new-role" name="role"><option value="clerk">児童手当担当</option><option value="supervisor">児童手当監督者</option></select>
<label for="new-password">初期パスワード（12文字以上）</label><input id="new-password" name="password" type="password" required autocomplete="new-password">
<p><button type="submit" id="account-submit">追加する</button></p></form>"#,
        esc(&sess.csrf)
    );
    let mut r = page("職員アカウント", Some(sess), &b);
    *r.status_mut() = status;
    r
}

#[derive(Deserialize)]
struct AccountForm {
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    disabled: Option<String>,
}

async fn account_create(
    State(s): State<WebState>,
    ctx: Ctx,
    Form(f): Form<AccountForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let sess = supervisor!(Ctx {
        sess: Some(sess),
        source: ctx.source.clone()
    });
    let bad = |ja: &str, en: &str| {
        let (ja, en) = (ja.to_string(), en.to_string());
        let (s, sess) = (s.clone(), sess.clone());
        async move {
            accounts_view(
                &s,
                &sess,
                Some((&ja, &en)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let Some(role) = Role::parse(&f.role) else {
        return bad("役割を選んでください。", "Choose a role.").await;
    };
    let (login, name) = match accounts::check_new(&f.login, &f.name, &f.password) {
        Ok(x) => x,
        Err(e) => return bad(&e.ja, &e.en).await,
    };
    let pw = f.password.clone();
    let hash = match tokio::task::spawn_blocking(move || accounts::hash_password(&pw)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let log = ctx
        .entry(&sess, Action::AccountCreated, format!("account:{login}"))
        .detail(role.label_ja());
    match s.store.create_account(&login, &name, role, hash, log).await {
        Ok(true) => Redirect::to("/accounts").into_response(),
        Ok(false) => {
            bad(
                "そのログインIDはすでに使われています。",
                "That login is taken.",
            )
            .await
        }
        Err(e) => internal(e),
    }
}

async fn account_update(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(login): Path<String>,
    Form(f): Form<AccountForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let sess = supervisor!(Ctx {
        sess: Some(sess),
        source: ctx.source.clone()
    });
    let Some(role) = Role::parse(&f.role) else {
        return accounts_view(
            &s,
            &sess,
            Some(("役割を選んでください。", "Choose a role.")),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let disabled = f.disabled.is_some();
    let log = ctx
        .entry(&sess, Action::AccountChanged, format!("account:{login}"))
        .detail(format!(
            "{}{}",
            role.label_ja(),
            if disabled { "・利用停止" } else { "" }
        ));
    match s.store.set_account(&login, role, disabled, log).await {
        Ok(Ok(())) => {
            // Its sessions end: the new role or the stop takes effect now.
            if let Ok(mut m) = s.sessions.lock() {
                m.retain(|_, v| v.login != login);
            }
            Redirect::to("/accounts").into_response()
        }
        Ok(Err("last_supervisor")) => {
            accounts_view(
                &s,
                &sess,
                Some((
                    "利用中の児童手当監督者が一人もいなくなるため変更できません。",
                    "This would leave no active supervisor.",
                )),
                StatusCode::CONFLICT,
            )
            .await
        }
        Ok(Err(_)) => error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "そのアカウントはありません。",
            "No such account.",
        ),
        Err(e) => internal(e),
    }
}

// ------------------------------------------------------------------ passwords

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    again: String,
}

fn password_view(sess: &Session, msg: Option<(&str, &str)>, status: StatusCode) -> Response {
    let mut b = msg
        .map(|(ja, en)| {
            format!(
                r#"<p class="err" role="alert" id="error">{}<br><span lang="en">{}</span></p>"#,
                esc(ja),
                esc(en)
            )
        })
        .unwrap_or_default();
    if sess.must_change {
        b.push_str(r#"<p id="must-change">一時パスワードでログインしています。続けるには、ご自分のパスワードを決めてください。</p>"#);
    }
    let _ = write!(
        b,
        r#"<form method="post" action="/password"><input type="hidden" name="csrf" value="{}">
<label for="current">現在のパスワード</label><input id="current" name="current" type="password" required autocomplete="current-password">
<label for="new">新しいパスワード（12文字以上）</label><input id="new" name="new" type="password" required autocomplete="new-password">
<label for="again">新しいパスワード（確認）</label><input id="again" name="again" type="password" required autocomplete="new-password">
<p><button type="submit" id="password-submit">変更する</button></p></form>"#,
        esc(&sess.csrf)
    );
    let mut r = page("パスワードの変更", Some(sess), &b);
    *r.status_mut() = status;
    r
}

/// The signed-in account's own password form (also the only page for an
/// account signed in with a temporary password).
async fn password_page(ctx: Ctx) -> Response {
    match ctx.sess.as_ref() {
        Some(sess) => password_view(sess, None, StatusCode::OK),
        None => Redirect::to("/login").into_response(),
    }
}

/// Changes the signed-in account's own password: the current one is
/// required (and a wrong one counts as a failed sign-in of this account
/// from this source, see [`crate::accounts`]); the new one is hashed with
/// Argon2id; the account's other sessions end. Logged either way.
async fn password_change(
    State(s): State<WebState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let Some(sess) = ctx.sess.clone() else {
        return Redirect::to("/login").into_response();
    };
    if sess.csrf != f.csrf {
        return error_page(
            Some(&sess),
            StatusCode::FORBIDDEN,
            "画面の有効期限が切れました。もう一度操作してください。",
            "The form expired; please try again.",
        );
    }
    if f.current.is_empty() || f.current.len() > 1024 {
        return password_view(
            &sess,
            Some((
                "現在のパスワードを入力してください。",
                "Enter your current password.",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if let Err(e) = accounts::check_change(&f.current, &f.new, &f.again) {
        return password_view(
            &sess,
            Some((&e.ja, &e.en)),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let now = chrono::Utc::now().timestamp();
    let attempt = match s.store.admit_login(&sess.login, &ctx.source, now).await {
        Ok(Ok(id)) => id,
        Ok(Err(wait)) => {
            let _ = s
                .store
                .log(
                    ctx.entry(
                        &sess,
                        Action::SignInThrottled,
                        format!("account:{}", sess.login),
                    )
                    .detail("password"),
                )
                .await;
            let minutes = wait.div_ceil(60);
            let mut r = password_view(
                &sess,
                Some((
                    &format!("現在のパスワードの誤りが続いたため、約{minutes}分間受け付けません。"),
                    &format!(
                        "Too many wrong current passwords; try again in about {minutes} minutes."
                    ),
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(e) => return internal(e),
    };
    let hash = match s.store.account(&sess.login).await {
        Ok(Some((a, h))) if !a.disabled => h,
        Ok(_) => return Redirect::to("/login").into_response(),
        Err(e) => return internal(e),
    };
    if !s.throttle.check(&f.current, &hash).await {
        if let Err(e) = s
            .store
            .log(ctx.entry(
                &sess,
                Action::PasswordChangeFailed,
                format!("account:{}", sess.login),
            ))
            .await
        {
            return internal(e);
        }
        return password_view(
            &sess,
            Some((
                "現在のパスワードが正しくありません。何も変更していません。",
                "The current password is wrong; nothing was changed.",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if let Err(e) = s.store.take_back_login(attempt).await {
        return internal(e);
    }
    let pw = f.new.clone();
    let new_hash = match tokio::task::spawn_blocking(move || accounts::hash_password(&pw)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let log = ctx.entry(
        &sess,
        Action::PasswordChanged,
        format!("account:{}", sess.login),
    );
    match s
        .store
        .set_password(&sess.login, new_hash, false, log)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Redirect::to("/login").into_response(),
        Err(e) => return internal(e),
    }
    // This session goes on (no longer held to the password page); the
    // account's other sessions end.
    let token = cookie(&headers).unwrap_or_default();
    if let Ok(mut m) = s.sessions.lock() {
        m.retain(|k, v| v.login != sess.login || *k == token);
        if let Some(v) = m.get_mut(&token) {
            v.must_change = false;
        }
    }
    let mut b = String::from(
        r#"<p id="done" role="status">パスワードを変更しました。</p><p><a href="/">業務一覧へ</a></p>"#,
    );
    if sess.must_change {
        b.push_str("<p>これからは新しいパスワードでログインしてください。</p>");
    }
    let mut fresh = sess.clone();
    fresh.must_change = false;
    page("パスワードの変更", Some(&fresh), &b)
}

/// A supervisor issues a temporary password for another account: shown
/// once on this page, stored only as its Argon2id hash; the account's
/// sessions end and it must choose its own password at the next sign-in.
async fn account_reset(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(login): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let sess = posted!(ctx, f.csrf);
    let sess = supervisor!(Ctx {
        sess: Some(sess),
        source: ctx.source.clone()
    });
    if login == sess.login {
        return accounts_view(
            &s,
            &sess,
            Some((
                "ご自分のパスワードは「パスワード変更」で変えてください。",
                "Change your own password on the password page.",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let account = match s.store.account(&login).await {
        Ok(Some((a, _))) => a,
        Ok(None) => {
            return error_page(
                Some(&sess),
                StatusCode::NOT_FOUND,
                "そのアカウントはありません。",
                "No such account.",
            );
        }
        Err(e) => return internal(e),
    };
    let temporary = accounts::temporary_password();
    let pw = temporary.clone();
    let hash = match tokio::task::spawn_blocking(move || accounts::hash_password(&pw)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let log = ctx.entry(&sess, Action::PasswordReset, format!("account:{login}"));
    match s.store.set_password(&login, hash, true, log).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                Some(&sess),
                StatusCode::NOT_FOUND,
                "そのアカウントはありません。",
                "No such account.",
            );
        }
        Err(e) => return internal(e),
    }
    if let Ok(mut m) = s.sessions.lock() {
        m.retain(|_, v| v.login != login);
    }
    let b = format!(
        r#"<p role="status">{name}（{login}）の一時パスワードを発行しました。この画面を閉じると二度と表示されません。本人に直接伝えてください。</p>
<p>一時パスワード：<code id="temporary">{pw}</code></p>
<p>次のログインのとき、本人が新しいパスワードを決めるまで他の画面は使えません。</p>
<p><a href="/accounts">職員アカウントへ戻る</a></p>"#,
        name = esc(&account.display_name),
        login = esc(&login),
        pw = esc(&temporary),
    );
    page("一時パスワードの発行", Some(&sess), &b)
}

// ------------------------------------------------------------------ access log

#[derive(Deserialize)]
struct LogQuery {
    before: Option<String>,
}

/// A log subject in words.
fn subject_words(s: &WebState, subject: &str) -> String {
    let (kind, rest) = subject.split_once(':').unwrap_or(("", subject));
    match kind {
        "claim" => format!("受給者番号 {rest}"),
        "person" => format!("宛名番号 {rest}"),
        "run" => format!("支払ファイル 第{rest}号"),
        "account" => format!("職員 {rest}"),
        "login" => format!("入力されたログインID「{rest}」"),
        "work" => format!("業務 {rest}"),
        "month" => YearMonth::parse(rest)
            .map(|m| format!("{}の支払", s.month(m)))
            .unwrap_or_else(|| rest.to_string()),
        "list" => "業務一覧・受給者一覧".to_string(),
        _ if subject == "special" => "消滅時の随時払".to_string(),
        _ if subject == "log" => "アクセス記録".to_string(),
        _ => subject.to_string(),
    }
}

fn detail_words(d: &str) -> String {
    match d {
        "source" => "送信元ごとの失敗回数の上限".into(),
        "account" => "アカウントと送信元ごとの失敗回数の上限".into(),
        "password" => "パスワード変更：アカウントと送信元ごとの失敗回数の上限".into(),
        _ => d.replace("person:", "宛名番号 "),
    }
}

async fn log_page(State(s): State<WebState>, ctx: Ctx, Query(q): Query<LogQuery>) -> Response {
    let sess = supervisor!(ctx);
    let before = match q.before.as_deref().map(str::trim).filter(|x| !x.is_empty()) {
        None => None,
        Some(x) => match x.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return error_page(
                    Some(&sess),
                    StatusCode::BAD_REQUEST,
                    "ページの指定が正しくありません。",
                    "The page asked for is not valid.",
                );
            }
        },
    };
    logged!(s, ctx.entry(&sess, Action::LogRead, "log"));
    let (rows, verified, people) = match (
        s.store.log_rows(100, before).await,
        s.store.verify_log().await,
        s.store.accounts().await,
    ) {
        (Ok(r), Ok(v), Ok(a)) => (r, v, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(e),
    };
    let names: HashMap<String, String> = people
        .into_iter()
        .map(|a| (a.login, a.display_name))
        .collect();
    let mut b = match &verified.broken {
        None => format!(
            r#"<p id="chain">記録の連鎖を確認しました：全{}件、改ざんはありません。</p>"#,
            verified.entries
        ),
        Some((seq, _)) => format!(
            r#"<p class="err" role="alert" id="chain">記録の連鎖が第{seq}件目で切れています。記録が書き換えられたか削除された可能性があります。<br><span lang="en">The access log's chain breaks at entry {seq}: an entry was changed or removed.</span></p>"#
        ),
    };
    b.push_str(r#"<table aria-labelledby="log-h"><caption id="log-h">アクセス記録（新しい順）</caption><thead><tr><th scope="col">番号</th><th scope="col">日時</th><th scope="col">職員</th><th scope="col">端末</th><th scope="col">操作</th><th scope="col">対象</th><th scope="col">内容</th></tr></thead><tbody>"#);
    for r in &rows {
        let who = match r.account.as_str() {
            "" => "（不明）".to_string(),
            "(command line)" => "（コマンド）".to_string(),
            l => match names.get(l) {
                Some(n) => format!("{n}（{l}）"),
                None => l.to_string(),
            },
        };
        let action = Action::parse(&r.action)
            .map(|a| a.label_ja().to_string())
            .unwrap_or_else(|| "（不明な操作）".into());
        let _ = write!(
            b,
            "<tr><td class=\"n\">{}</td><td class=\"m\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            when(&s, r.at),
            esc(&who),
            esc(if r.source.is_empty() {
                "（コマンド）"
            } else {
                &r.source
            }),
            esc(&action),
            esc(&subject_words(&s, &r.subject)),
            esc(&detail_words(&r.detail))
        );
    }
    b.push_str("</tbody></table>");
    if let Some(last) = rows.last()
        && last.seq > 1
    {
        let _ = write!(
            b,
            r#"<p><a href="/access-log?before={}" id="older">さらに古い記録</a></p>"#,
            last.seq
        );
    }
    page("アクセス記録", Some(&sess), &b)
}

// ------------------------------------------------------------------ JSON API

macro_rules! api_session {
    ($ctx:expr) => {
        match $ctx.sess.clone() {
            Some(x) if x.must_change => {
                return api_error(
                    StatusCode::FORBIDDEN,
                    "password_change_required",
                    "一時パスワードでログインしています。先にパスワードを変更してください。",
                    "Signed in with a temporary password: change it first.",
                );
            }
            Some(x) => x,
            None => {
                return api_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "ログインしてください。",
                    "Sign in first.",
                );
            }
        }
    };
}

/// Logs an API read before answering (a JSON 500 if it cannot).
macro_rules! api_logged {
    ($s:expr, $entry:expr) => {
        if let Err(e) = $s.store.log($entry).await {
            tracing::error!("allowance: access log: {e}");
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "処理できませんでした。",
                "Something went wrong.",
            );
        }
    };
}

#[derive(Serialize)]
struct ClaimJson {
    claim: ClaimRow,
    first_month: String,
    fifteen_day_rule: bool,
    paid_by_employer: bool,
    /// 振込先口座 (null: 口座未登録), the number masked.
    account: Option<AccountJson>,
    /// The online filing the claim was entered from (null: entered at
    /// the counter).
    filing: Option<FilingJson>,
    months: Vec<MonthJson>,
}

/// A 振込先口座 as the API shows it: the 口座番号 masked but for its last
/// 4 digits.
#[derive(Serialize)]
struct AccountJson {
    bank_code: String,
    branch_code: String,
    /// `ordinary` (普通) or `current` (当座).
    account_kind: &'static str,
    account_kind_ja: &'static str,
    /// e.g. `***4567`.
    account_number_masked: String,
    /// 口座名義 in katakana.
    holder_kana: String,
}

impl AccountJson {
    fn of(a: &BankAccount) -> AccountJson {
        AccountJson {
            bank_code: a.bank.clone(),
            branch_code: a.branch.clone(),
            account_kind: a.kind.code(),
            account_kind_ja: a.kind.label_ja(),
            account_number_masked: a.masked_number(),
            holder_kana: a.holder.clone(),
        }
    }
}

/// The online filing a claim came from.
#[derive(Serialize)]
struct FilingJson {
    /// The registry's number of the filing.
    filing_id: i64,
    /// 受付番号 (what the citizen was given).
    receipt_number: String,
    /// The day it was received (`YYYY-MM-DD`, and in 和暦).
    filed_on: Option<String>,
    filed_on_wareki: Option<String>,
}

#[derive(Serialize)]
struct MonthJson {
    month: String,
    paid_in: String,
    total: i64,
    children: Vec<ChildMonthJson>,
}

#[derive(Serialize)]
struct ChildMonthJson {
    /// The child's key on the claim (a 宛名番号, or this system's own key
    /// for a child not resident here).
    child: String,
    /// None: a child not resident in this municipality (entered by hand).
    addressee_number: Option<String>,
    name: String,
    basis: rules::Basis,
    basis_ja: &'static str,
    basis_en: &'static str,
    rank: usize,
    amount: i64,
    rule: rules::Rule,
    rule_ja: &'static str,
    rule_en: &'static str,
}

fn claim_json(s: &WebState, c: ClaimRow, filing: Option<crate::store::FilingRef>) -> ClaimJson {
    let (first, special) = c.first_month();
    let who: HashMap<String, (String, bool)> = c
        .children
        .iter()
        .map(|x| (x.child.clone(), (x.name.clone(), x.registered)))
        .collect();
    let months = shown_months(s, &c)
        .into_iter()
        .map(|m| MonthJson {
            month: m.month.iso(),
            paid_in: m.paid_in.iso(),
            total: m.total,
            children: m
                .children
                .into_iter()
                .map(|x| ChildMonthJson {
                    addressee_number: who.get(&x.key).is_none_or(|w| w.1).then(|| x.key.clone()),
                    name: who.get(&x.key).map(|w| w.0.clone()).unwrap_or_default(),
                    basis: x.basis,
                    basis_ja: x.basis.explain_ja(),
                    basis_en: x.basis.explain_en(),
                    child: x.key,
                    rank: x.rank,
                    amount: x.amount,
                    rule: x.rule,
                    rule_ja: x.rule.explain_ja(),
                    rule_en: x.rule.explain_en(),
                })
                .collect(),
        })
        .collect();
    ClaimJson {
        first_month: first.iso(),
        fifteen_day_rule: special,
        paid_by_employer: c.public_servant,
        account: c.account.as_ref().map(AccountJson::of),
        filing: filing.map(|f| FilingJson {
            filing_id: f.filing_id,
            receipt_number: f.receipt,
            filed_on: f.received_on.map(|d| d.format("%Y-%m-%d").to_string()),
            filed_on_wareki: f.received_on.map(|d| s.wareki(d)),
        }),
        claim: c,
        months,
    }
}

async fn api_claims(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = api_session!(ctx);
    match s.store.claims().await {
        Ok(cs) => {
            api_logged!(
                s,
                ctx.entry(&sess, Action::ListRead, "list:api_claims")
                    .detail(format!("受給者{}件", cs.len()))
            );
            let mut v: Vec<ClaimJson> = Vec::with_capacity(cs.len());
            for c in cs {
                let filing = match s.store.claim_filing(c.id).await {
                    Ok(f) => f,
                    Err(e) => return internal(e),
                };
                v.push(claim_json(&s, c, filing));
            }
            axum::Json(v).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn api_claim(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    let sess = api_session!(ctx);
    let Ok(id) = raw.parse::<i64>() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        );
    };
    match s.store.claim(id).await {
        Ok(Some(c)) => {
            let filing = match s.store.claim_filing(id).await {
                Ok(f) => f,
                Err(e) => return internal(e),
            };
            api_logged!(
                s,
                ctx.entry(&sess, Action::ClaimRead, format!("claim:{id}"))
            );
            axum::Json(claim_json(&s, c, filing)).into_response()
        }
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        ),
        Err(e) => internal(e),
    }
}

#[derive(Serialize)]
struct WorkJson {
    #[serde(flatten)]
    item: WorkItem,
    label_ja: &'static str,
    label_en: &'static str,
}

async fn api_work(State(s): State<WebState>, ctx: Ctx) -> Response {
    let sess = api_session!(ctx);
    match s.store.work_items(false).await {
        Ok(ws) => {
            api_logged!(
                s,
                ctx.entry(&sess, Action::ListRead, "list:api_work")
                    .detail(format!("業務{}件", ws.len()))
            );
            axum::Json(
                ws.into_iter()
                    .map(|w| WorkJson {
                        label_ja: w.kind.label_ja(),
                        label_en: w.kind.label_en(),
                        item: w,
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response()
        }
        Err(e) => internal(e),
    }
}

async fn api_payment(State(s): State<WebState>, ctx: Ctx, Path(raw): Path<String>) -> Response {
    let sess = api_session!(ctx);
    let Some(p) = payment_month_param(&raw) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_payment_month",
            "支払月は偶数月（YYYY-MM）で指定してください。",
            "A payment month is an even month, as YYYY-MM.",
        );
    };
    match payment_lines(&s.store, p).await {
        Ok(mut l) => {
            api_logged!(
                s,
                ctx.entry(&sess, Action::PaymentRead, format!("month:{}", p.iso()))
                    .detail(format!("{}件", l.len()))
            );
            // The account number masked but its last four digits, as on
            // every other answer of this API: the full number goes only
            // into the payment file (a supervisor's download, logged).
            for line in &mut l {
                if let Some(a) = line.account.as_mut() {
                    a.number = a.masked_number();
                }
            }
            axum::Json(l).into_response()
        }
        Err(e) => internal(e),
    }
}

fn api_refusal(r: Refusal) -> Response {
    api_error(r.status, r.code, &r.ja, &r.en)
}

/// A JSON body the API could not read: 400 in both languages.
fn api_bad_body(e: axum::extract::rejection::JsonRejection) -> Response {
    // The parser's own words are English and technical: they go in a
    // field of their own, never into the Japanese message.
    api_error_with(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "送信された内容をJSONとして読み取れません。項目の名前と値の形を確かめて送り直してください。",
        "The request body could not be read as JSON; check the names and the form of the values and send it again.",
        Some(e.body_text()),
    )
}

#[derive(Serialize)]
struct ChildChangeJson {
    /// The child's key on the claim.
    child: Option<String>,
    /// The first month the change applies to (`YYYY-MM`): counted from
    /// (an addition) or reduced from (an end).
    from_month: String,
    claim: ClaimJson,
}

async fn api_claim_after(
    s: &WebState,
    id: i64,
    status: StatusCode,
    child: Option<String>,
    from: YearMonth,
) -> Response {
    let filing = match s.store.claim_filing(id).await {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    match s.store.claim(id).await {
        Ok(Some(c)) => (
            status,
            axum::Json(ChildChangeJson {
                child,
                from_month: from.iso(),
                claim: claim_json(s, c, filing),
            }),
        )
            .into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        ),
        Err(e) => internal(e),
    }
}

/// `POST /api/claims/{id}/children`: a child living elsewhere added
/// ([`add_apart_child`]). The session cookie is SameSite=Strict and the
/// body must be JSON, which no other site's form can send.
async fn api_apart_add(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    body: Result<axum::Json<ApartInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let sess = api_session!(ctx);
    let Ok(id) = raw.parse::<i64>() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        );
    };
    let input = match body {
        Ok(axum::Json(b)) => b,
        Err(e) => return api_bad_body(e),
    };
    match add_apart_child(&s, &sess.login, &ctx.source, id, &input).await {
        Ok((key, from)) => api_claim_after(&s, id, StatusCode::CREATED, Some(key), from).await,
        Err(r) => api_refusal(r),
    }
}

/// `POST /api/claims/{id}/children/end`: a child ended by hand
/// ([`end_child`]).
async fn api_child_end(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    body: Result<axum::Json<EndInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let sess = api_session!(ctx);
    let Ok(id) = raw.parse::<i64>() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        );
    };
    let input = match body {
        Ok(axum::Json(b)) => b,
        Err(e) => return api_bad_body(e),
    };
    let child = input.child.trim().to_string();
    match end_child(&s, &sess.login, &ctx.source, id, &input).await {
        Ok(from) => api_claim_after(&s, id, StatusCode::OK, Some(child), from).await,
        Err(r) => api_refusal(r),
    }
}

/// `PUT /api/claims/{id}/account`: records or changes the claim's
/// 振込先口座 ([`set_account`]: the page's checks, typed errors in
/// Japanese and English, logged like the page's change). The body is
/// JSON (`bank_code`, `branch_code`, `account_kind` — `ordinary` or
/// `current` —, `account_number`, `account_holder`); the answer is the
/// claim, the number masked.
async fn api_account_set(
    State(s): State<WebState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    body: Result<axum::Json<AccountFields>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let sess = api_session!(ctx);
    let Ok(id) = raw.parse::<i64>() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        );
    };
    let input = match body {
        Ok(axum::Json(b)) => b,
        Err(e) => return api_bad_body(e),
    };
    match set_account(&s, &sess.login, &ctx.source, id, &input).await {
        Ok(()) => {
            let (c, filing) = match (s.store.claim(id).await, s.store.claim_filing(id).await) {
                (Ok(Some(c)), Ok(f)) => (c, f),
                (Ok(None), _) => {
                    return api_error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "その受給者はいません。",
                        "No such claim.",
                    );
                }
                (Err(e), _) | (_, Err(e)) => return internal(e),
            };
            axum::Json(claim_json(&s, c, filing)).into_response()
        }
        Err(r) => api_refusal(r),
    }
}

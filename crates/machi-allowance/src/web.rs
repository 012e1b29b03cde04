//! The allowance clerk's pages (server-rendered, Japanese, 和暦) and the
//! JSON API of the allowance system. Signed in with the clerk password of
//! this system (its own, not the registry's); a session cookie
//! (HttpOnly, SameSite=Strict) and a CSRF token in every form.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::error::Localized;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rules::{self, YearMonth};
use crate::store::{ClaimRow, NewClaim, Store, WorkItem};
use crate::worker::{RegistryClient, is_child};

const COOKIE: &str = "allowance_session";
const SESSION: Duration = Duration::from_secs(8 * 3600);

/// What the pages need.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub client: Arc<RegistryClient>,
    /// SHA-256 of the clerk password.
    password_digest: [u8; 32],
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    eras: Arc<EraTable>,
    /// "Today" for defaults and the months shown (None: the system clock).
    pub today: Option<NaiveDate>,
}

#[derive(Clone)]
struct Session {
    clerk: String,
    csrf: String,
    until: Instant,
}

impl WebState {
    pub fn new(store: Store, client: Arc<RegistryClient>, clerk_password: &str) -> WebState {
        WebState {
            store,
            client,
            password_digest: Sha256::digest(clerk_password.as_bytes()).into(),
            sessions: Arc::default(),
            eras: Arc::new(EraTable::standard()),
            today: None,
        }
    }
    fn today(&self) -> NaiveDate {
        self.today
            .unwrap_or_else(|| chrono::Local::now().date_naive())
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

fn yen(n: i64) -> String {
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
            r#"<nav aria-label="メニュー"><ul><li><a href="/">業務一覧</a></li><li><a href="/claims/new">認定請求の入力</a></li><li><a href="/payments">支払</a></li></ul>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><span id="me">{}</span> <button type="submit">ログアウト</button></form></nav>"#,
            esc(&s.csrf),
            esc(&s.clerk)
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
td.n{{text-align:right;white-space:nowrap}} td.m{{white-space:nowrap}} .err{{color:#a00000;border:2px solid #a00000;padding:.5rem}}
label{{display:block;margin-top:.5rem}} a{{color:#0b4f6c}} :focus{{outline:3px solid #d35400}}
.skip{{position:absolute;left:-999px}} .skip:focus{{left:1rem;top:1rem;background:#fff;color:#000}}
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

/// A JSON error: `{code, message_ja, message_en}`.
#[derive(Serialize)]
struct ApiError {
    code: &'static str,
    message_ja: String,
    message_en: String,
}

fn api_error(status: StatusCode, code: &'static str, ja: &str, en: &str) -> Response {
    let mut r = (
        status,
        axum::Json(ApiError {
            code,
            message_ja: ja.into(),
            message_en: en.into(),
        }),
    )
        .into_response();
    secure_headers(&mut r);
    r
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
        .route("/work/{id}/done", post(work_done))
        .route("/payments", get(payments_index))
        .route("/payments/{month}", get(payment_page))
        .route("/api/claims", get(api_claims))
        .route("/api/claims/{id}", get(api_claim))
        .route("/api/work-items", get(api_work))
        .route("/api/payments/{month}", get(api_payment))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

// ------------------------------------------------------------------ sign-in

#[derive(Deserialize)]
struct LoginForm {
    clerk: String,
    password: String,
}

async fn login_form() -> Response {
    login_page(None)
}

fn login_page(error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!(r#"<p class="err" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    page(
        "ログイン",
        None,
        &format!(
            r#"{err}<form method="post" action="/login">
<label for="clerk">担当者名</label><input id="clerk" name="clerk" required autocomplete="name">
<label for="password">パスワード</label><input id="password" name="password" type="password" required autocomplete="current-password">
<p><button id="login-submit" type="submit">ログイン</button></p></form>"#
        ),
    )
}

async fn login(State(s): State<WebState>, Form(f): Form<LoginForm>) -> Response {
    let given: [u8; 32] = Sha256::digest(f.password.as_bytes()).into();
    // Compare digests in constant time (equal length by construction).
    let same = given
        .iter()
        .zip(s.password_digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    let clerk = f.clerk.trim();
    if !same || clerk.is_empty() || clerk.chars().count() > 40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut r = login_page(Some(
            "担当者名またはパスワードが正しくありません。 / The name or password is wrong.",
        ));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let token = random_hex();
    if let Ok(mut m) = s.sessions.lock() {
        m.insert(
            token.clone(),
            Session {
                clerk: clerk.to_string(),
                csrf: random_hex(),
                until: Instant::now() + SESSION,
            },
        );
    }
    let mut r = Redirect::to("/").into_response();
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
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let (Some(tok), Some(sess)) = (cookie(&headers), s.session(&headers))
        && sess.csrf == f.csrf
        && let Ok(mut m) = s.sessions.lock()
    {
        m.remove(&tok);
    }
    Redirect::to("/login").into_response()
}

/// The session, or the sign-in page.
macro_rules! signed_in {
    ($s:expr, $headers:expr) => {
        match $s.session(&$headers) {
            Some(x) => x,
            None => return Redirect::to("/login").into_response(),
        }
    };
}

/// The session of a form post with its CSRF token, or an error page.
macro_rules! posted {
    ($s:expr, $headers:expr, $csrf:expr) => {{
        let sess = signed_in!($s, $headers);
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

// ------------------------------------------------------------------ pages

async fn home(State(s): State<WebState>, headers: HeaderMap) -> Response {
    let sess = signed_in!(s, headers);
    let (work, claims) = match (s.store.work_items(true).await, s.store.claims().await) {
        (Ok(w), Ok(c)) => (w, c),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let mut b = String::new();
    b.push_str(r#"<h2 id="work">未処理の業務</h2>"#);
    if work.is_empty() {
        b.push_str("<p>未処理の業務はありません。</p>");
    } else {
        b.push_str(r#"<table aria-labelledby="work"><thead><tr><th scope="col">内容</th><th scope="col">対象者</th><th scope="col">異動日</th><th scope="col">操作</th></tr></thead><tbody>"#);
        for w in &work {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(w.kind.label_ja()),
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
                c.children.iter().filter(|x| x.left_on.is_none()).count(),
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
        (BirthClaim | MoveInClaim, _) => {
            format!(r#"<a href="/claims/new?work={}">認定請求を入力</a> "#, w.id)
        }
        (BirthIncrease, Some(c)) => format!(
            r##"<a href="/claims/{c}?work={}#increase">額改定請求を入力</a> "##,
            w.id
        ),
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
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let _sess = posted!(s, headers, f.csrf);
    match s.store.close_work_item(id).await {
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

async fn claim_form(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<ClaimQuery>,
) -> Response {
    let sess = signed_in!(s, headers);
    let work = match about_work(&s, q.work).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut claimant = String::new();
    if let Some(w) = &work {
        // The household head is the usual claimant; the clerk may name
        // another member.
        if let Ok(Some((head, _))) = s.client.household(&w.household).await {
            claimant = head.unwrap_or_default();
        }
    }
    let view = ClaimFormView {
        claimant_name: name_of(&s, &claimant).await,
        claimant,
        claimed_on: s.wareki(s.today()),
        event_on: work
            .as_ref()
            .and_then(|w| w.event_on)
            .map(|d| s.wareki(d))
            .unwrap_or_default(),
        public_servant: false,
        work,
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
    let about = v
        .work
        .as_ref()
        .map(|w| {
            format!(
                "<p>{}（{}）</p>",
                esc(w.kind.label_ja()),
                esc(&w.person_name)
            )
        })
        .unwrap_or_default();
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
<label for="claimant">請求者の宛名番号</label><input id="claimant" name="claimant" value="{c}" required inputmode="numeric" aria-describedby="claimant-help"><span id="claimant-help">世帯の児童（続柄が子）は住民記録から読み込みます。</span>{name}
<label for="claimed_on">請求日（和暦または西暦）</label><input id="claimed_on" name="claimed_on" value="{d}" required>
<label for="event_on">出生日・転入日（15日特例、該当する場合）</label><input id="event_on" name="event_on" value="{e}">
<label><input type="checkbox" name="public_servant" value="1" id="public_servant"{ps}> 公務員（所属庁から支給）</label>
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
    /// The work item the form came from (empty: none).
    #[serde(default)]
    work: String,
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

/// Enters a claim: the claimant and their household's children as the
/// registry shows them.
pub async fn enter_claim(
    s: &WebState,
    clerk: &str,
    claimant: &str,
    claimed_on: NaiveDate,
    event_on: Option<NaiveDate>,
    public_servant: bool,
) -> Result<i64, (String, String)> {
    let a = claimant.trim();
    let p = s
        .client
        .resident(a)
        .await
        .map_err(|e| {
            (
                "住民記録システムに接続できません。".to_string(),
                e.to_string(),
            )
        })?
        .filter(|p| p.resident)
        .ok_or_else(|| {
            (
                "その宛名番号の住民は見つかりません。".to_string(),
                "No resident has that addressee number.".to_string(),
            )
        })?;
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
    let members = s
        .client
        .household(&p.household)
        .await
        .map_err(|e| {
            (
                "住民記録システムに接続できません。".to_string(),
                e.to_string(),
            )
        })?
        .map(|(_, m)| m)
        .unwrap_or_default();
    let children: Vec<(String, String, NaiveDate)> = members
        .iter()
        .filter(|m| m.resident && m.addressee_number != a && is_child(m, claimed_on))
        // A child born after the claim date comes by a 額改定請求.
        .filter(|m| m.birth.is_some_and(|b| b <= claimed_on))
        .filter_map(|m| Some((m.addressee_number.clone(), m.name.clone(), m.birth?)))
        .collect();
    if !children
        .iter()
        .any(|c| rules::child_until(c.2) >= claimed_on)
    {
        return Err((
            "世帯に18歳年度末までの児童がいません。".into(),
            "The household has no child up to the fiscal year of 18.".into(),
        ));
    }
    s.store
        .add_claim(NewClaim {
            claimant: a.to_string(),
            claimant_name: p.name,
            household: p.household,
            claimed_on,
            event_on,
            public_servant,
            children,
            entered_by: clerk.to_string(),
        })
        .await
        .map_err(|e| ("登録できませんでした。".to_string(), e.to_string()))
}

async fn claim_create(
    State(s): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<ClaimForm>,
) -> Response {
    let sess = posted!(s, headers, f.csrf);
    let work = match about_work(&s, f.work.trim().parse().ok()).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let view = ClaimFormView {
        work,
        claimant: f.claimant.clone(),
        claimant_name: name_of(&s, &f.claimant).await,
        claimed_on: f.claimed_on.clone(),
        event_on: f.event_on.clone(),
        public_servant: f.public_servant.is_some(),
    };
    let again = |ja: &str, en: &str| claim_form_page(&sess, &view, Some((ja, en)));
    let claimed_on = match parse_date(&s.eras, &f.claimed_on) {
        Ok(Some(d)) => d,
        Ok(None) => return again("請求日を入力してください。", "Enter the claim date."),
        Err((ja, en)) => return again(&format!("請求日：{ja}"), &format!("claim date: {en}")),
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
    match enter_claim(
        &s,
        &sess.clerk,
        &f.claimant,
        claimed_on,
        event_on,
        f.public_servant.is_some(),
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
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<ClaimQuery>,
) -> Response {
    let sess = signed_in!(s, headers);
    let c = match s.store.claim(id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                Some(&sess),
                StatusCode::NOT_FOUND,
                "その受給者はいません。",
                "No such claim.",
            );
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
    let now = YearMonth::of(s.today());
    let current = rules::month(&c.rules(), now);
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
    b.push_str(r#"<h2 id="children">児童</h2><table aria-labelledby="children"><thead><tr><th scope="col">氏名</th><th scope="col">生年月日</th><th scope="col">今月の順位</th><th scope="col">支給対象の終期</th><th scope="col">備考</th></tr></thead><tbody>"#);
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
        let over18 = rules::child_until(ch.birth) < s.today();
        if over18 && rules::counted_until(ch.birth) >= s.today() {
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
            s.wareki(rules::child_until(ch.birth)),
            note
        );
    }
    b.push_str("</tbody></table>");
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
    b.push_str(r#"<h2 id="months">月ごとの手当額</h2><table aria-labelledby="months"><thead><tr><th scope="col">月</th><th scope="col">支払月</th><th scope="col">月額</th><th scope="col">内訳（根拠）</th></tr></thead><tbody>"#);
    for m in &months {
        let detail: Vec<String> = m
            .children
            .iter()
            .map(|x| {
                format!(
                    "{}（第{}子）{}：{}",
                    esc(names.get(x.key.as_str()).copied().unwrap_or("")),
                    x.rank,
                    yen(x.amount),
                    esc(x.rule.explain_ja())
                )
            })
            .collect();
        let _ = write!(
            b,
            r#"<tr><td class="m">{}</td><td class="m">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            s.month(m.month),
            s.month(m.paid_in),
            yen(m.total),
            detail.join("<br>")
        );
    }
    b.push_str("</tbody></table><p>支払は年6回（2月・4月・6月・8月・10月・12月）、各支払月の前月までの2か月分です（児童手当法第8条第4項）。</p>");
    page(&format!("受給者：{}", c.claimant_name), Some(&sess), &b)
}

#[derive(Deserialize)]
struct ChildForm {
    csrf: String,
    work: i64,
    requested_on: String,
}

async fn child_add(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ChildForm>,
) -> Response {
    let sess = posted!(s, headers, f.csrf);
    let bad =
        |ja: &str, en: &str| error_page(Some(&sess), StatusCode::UNPROCESSABLE_ENTITY, ja, en);
    let requested_on = match parse_date(&s.eras, &f.requested_on) {
        Ok(Some(d)) if d <= s.today() => d,
        Ok(Some(_)) => {
            return bad(
                "請求日が未来の日付です。",
                "The claim date is in the future.",
            );
        }
        Ok(None) => return bad("請求日を入力してください。", "Enter the claim date."),
        Err((ja, en)) => return bad(&format!("請求日：{ja}"), &format!("claim date: {en}")),
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
    match s
        .store
        .add_child(
            id,
            (p.addressee_number, p.name, birth),
            requested_on,
            w.event_on,
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/claims/{id}")).into_response(),
        Err(e) => internal(e),
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
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<SupportForm>,
) -> Response {
    let _sess = posted!(s, headers, f.csrf);
    match s.store.set_supported(id, f.child, f.supported == "1").await {
        Ok(_) => Redirect::to(&format!("/claims/{id}")).into_response(),
        Err(e) => internal(e),
    }
}

async fn payments_index(State(s): State<WebState>, headers: HeaderMap) -> Response {
    let sess = signed_in!(s, headers);
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
    page("支払", Some(&sess), &b)
}

/// One line of a payment file.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentLine {
    pub claim_id: i64,
    pub claimant: String,
    pub claimant_name: String,
    pub amount: i64,
    pub months: Vec<String>,
}

/// The payment of month `p`: every claim paid by the municipality (not
/// 公務員), with what it gets.
pub async fn payment_lines(
    store: &Store,
    p: YearMonth,
) -> Result<Vec<PaymentLine>, crate::store::StoreError> {
    let claims = store.claims().await?;
    Ok(claims
        .into_iter()
        .filter(|c| !c.public_servant)
        .filter_map(|c| {
            let (amount, ms) = rules::payment(&c.rules(), p);
            (amount > 0).then(|| PaymentLine {
                claim_id: c.id,
                claimant: c.claimant.clone(),
                claimant_name: c.claimant_name.clone(),
                amount,
                months: ms.iter().map(|m| m.month.iso()).collect(),
            })
        })
        .collect())
}

fn payment_month_param(raw: &str) -> Option<YearMonth> {
    let m = YearMonth::parse(raw.strip_suffix(".csv").unwrap_or(raw))?;
    rules::months_paid_in(m).map(|_| m)
}

async fn payment_page(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let sess = signed_in!(s, headers);
    let Some(p) = payment_month_param(&raw) else {
        return error_page(
            Some(&sess),
            StatusCode::NOT_FOUND,
            "支払月は偶数月（2月・4月・6月・8月・10月・12月）です。",
            "Payment months are February, April, June, August, October and December.",
        );
    };
    let lines = match payment_lines(&s.store, p).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    if raw.ends_with(".csv") {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
            "受給者番号",
            "宛名番号",
            "氏名",
            "支払月",
            "対象月",
            "支払額",
        ]);
        for l in &lines {
            let _ = w.write_record([
                l.claim_id.to_string(),
                l.claimant.clone(),
                l.claimant_name.clone(),
                p.iso(),
                l.months.join(" "),
                l.amount.to_string(),
            ]);
        }
        let body = w.into_inner().unwrap_or_default();
        let mut r = (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"jidou-teate-{}.csv\"", p.iso()),
                ),
            ],
            body,
        )
            .into_response();
        secure_headers(&mut r);
        return r;
    }
    let [a, z] = rules::months_paid_in(p).expect("checked");
    let mut b = format!(
        r#"<p>{}・{}分（公務員は所属庁が支給するため含みません）。</p><table aria-labelledby="lines-h"><caption id="lines-h">支払明細</caption><thead><tr><th scope="col">受給者</th><th scope="col">支払額</th></tr></thead><tbody>"#,
        s.month(a),
        s.month(z)
    );
    let mut total = 0;
    for l in &lines {
        total += l.amount;
        let _ = write!(
            b,
            r#"<tr><td><a href="/claims/{}">{}</a></td><td class="n">{}</td></tr>"#,
            l.claim_id,
            esc(&l.claimant_name),
            yen(l.amount)
        );
    }
    let _ = write!(
        b,
        r#"</tbody></table><p>合計 {}（{}件）</p><p><a href="/payments/{}.csv" id="csv">支払ファイル（CSV）をダウンロード</a></p>"#,
        yen(total),
        lines.len(),
        p.iso()
    );
    page(&format!("{}の支払", s.month(p)), Some(&sess), &b)
}

// ------------------------------------------------------------------ JSON API

macro_rules! api_session {
    ($s:expr, $headers:expr) => {
        if $s.session(&$headers).is_none() {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "ログインしてください。",
                "Sign in first.",
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
    months: Vec<MonthJson>,
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
    addressee_number: String,
    rank: usize,
    amount: i64,
    rule: rules::Rule,
    rule_ja: &'static str,
    rule_en: &'static str,
}

fn claim_json(s: &WebState, c: ClaimRow) -> ClaimJson {
    let (first, special) = c.first_month();
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
                    addressee_number: x.key,
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
        claim: c,
        months,
    }
}

async fn api_claims(State(s): State<WebState>, headers: HeaderMap) -> Response {
    api_session!(s, headers);
    match s.store.claims().await {
        Ok(cs) => {
            let v: Vec<ClaimJson> = cs.into_iter().map(|c| claim_json(&s, c)).collect();
            axum::Json(v).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn api_claim(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    api_session!(s, headers);
    let Ok(id) = raw.parse::<i64>() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "その受給者はいません。",
            "No such claim.",
        );
    };
    match s.store.claim(id).await {
        Ok(Some(c)) => axum::Json(claim_json(&s, c)).into_response(),
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

async fn api_work(State(s): State<WebState>, headers: HeaderMap) -> Response {
    api_session!(s, headers);
    match s.store.work_items(false).await {
        Ok(ws) => axum::Json(
            ws.into_iter()
                .map(|w| WorkJson {
                    label_ja: w.kind.label_ja(),
                    label_en: w.kind.label_en(),
                    item: w,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn api_payment(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    api_session!(s, headers);
    let Some(p) = payment_month_param(&raw) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_payment_month",
            "支払月は偶数月（YYYY-MM）で指定してください。",
            "A payment month is an even month, as YYYY-MM.",
        );
    };
    match payment_lines(&s.store, p).await {
        Ok(l) => axum::Json(l).into_response(),
        Err(e) => internal(e),
    }
}

//! The portal's pages and the back office's pull endpoints.
//!
//! The citizen's draft is named by a cookie holding its resume code
//! (HttpOnly, SameSite=Strict: a page on another site cannot post to a
//! draft, which is the portal's protection against cross-site forgery).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, NaiveDate};
use machi_domain::dates::EraTable;
use machi_procedures::{
    Answers, CheckContext, Definition, Field, FieldError, FieldKind, Identity, Lang,
    MAX_ATTACHMENT_BYTES, file_error, file_type_of,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Refusal, Status};
use crate::{Portal, seal};

const DRAFT_COOKIE: &str = "portal_draft";
const LANG_COOKIE: &str = "portal_lang";
const CSS: &str = include_str!("../templates/portal.css");

/// The portal's routes.
pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/portal.css", get(css))
        .route("/lang/{code}", get(set_lang))
        .route("/t/{tenant}", get(tenant_page))
        .route("/t/{tenant}/{procedure}", get(start_page))
        .route("/t/{tenant}/{procedure}/start", post(start))
        .route("/d/p/{page}", get(page_get).post(page_post))
        .route("/d/check", get(check_get))
        .route("/d/sign", get(sign_get).post(sign_post))
        .route("/d/sign/document", get(sign_document))
        .route("/d/confirm", get(confirm_get))
        .route("/d/submit", post(submit))
        .route("/d/saved", get(saved))
        .route("/resume", get(resume_get).post(resume_post))
        .route("/status", get(status_form).post(status_find))
        .route("/status/{receipt}", get(status_page))
        .route("/status/{receipt}/correct", post(correct_start))
        .route("/backoffice/filings", get(pull))
        .route("/backoffice/ack", post(ack))
        .route("/backoffice/status", post(push_status))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(
            MAX_ATTACHMENT_BYTES as usize * 2 + 64 * 1024,
        ))
        .with_state(portal)
}

// ---------------------------------------------------------------- helpers

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .map(|c| Lang::from_code(&c))
        .unwrap_or_default()
}

fn html<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => (
            status,
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
                    HeaderValue::from_static(
                        "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
                    ),
                ),
                (
                    header::HeaderName::from_static("referrer-policy"),
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "portal page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

/// What every page shares.
struct Chrome {
    l: Lang,
    title: String,
    /// The path of this page, for the language links.
    here: String,
}

impl Chrome {
    fn new(l: Lang, title: impl Into<String>, here: impl Into<String>) -> Chrome {
        Chrome {
            l,
            title: title.into(),
            here: here.into(),
        }
    }
    fn t<'a>(&self, ja: &'a str, easy: &'a str, en: &'a str) -> &'a str {
        self.l.t(ja, easy, en)
    }
    /// A colon as the language writes it (「担当：」, "Handled by: ").
    fn colon(&self) -> &'static str {
        if self.l == Lang::En { ": " } else { "：" }
    }
    /// Text in parentheses as the language writes them (「（府中市）」,
    /// " (Fuchu City)").
    fn paren(&self, inner: &str) -> String {
        if self.l == Lang::En {
            format!(" ({inner})")
        } else {
            format!("（{inner}）")
        }
    }
    fn lang_links(&self) -> Vec<(&'static str, &'static str, &'static str, bool)> {
        [
            ("ja", "日本語", "ja"),
            ("easy", "やさしい にほんご", "ja"),
            ("en", "English", "en"),
        ]
        .into_iter()
        .map(|(code, label, hl)| (code, label, hl, self.l.code() == code))
        .collect()
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    heading: String,
    body: String,
    link: Option<(String, String)>,
}

fn message(
    l: Lang,
    status: StatusCode,
    heading: &str,
    body: &str,
    link: Option<(String, String)>,
) -> Response {
    html(
        status,
        &MessagePage {
            c: Chrome::new(l, heading, "/"),
            heading: heading.to_owned(),
            body: body.to_owned(),
            link,
        },
    )
}

fn oops(l: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "portal error");
    message(
        l,
        StatusCode::INTERNAL_SERVER_ERROR,
        l.t(
            "ただいま手続を受け付けられません",
            "いま てつづきが できません",
            "Sorry, there is a problem with the service",
        ),
        l.t(
            "時間をおいてもう一度お試しください。入力した内容は保存されています。",
            "すこし まってから もう いちど ためして ください。かいた ことは のこって います。",
            "Try again later. What you entered has been saved.",
        ),
        Some((
            "/".into(),
            l.t("トップへ", "はじめの ページへ", "Go to the start")
                .into(),
        )),
    )
}

async fn not_found(headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    message(
        l,
        StatusCode::NOT_FOUND,
        l.t(
            "ページが見つかりません",
            "ページが ありません",
            "Page not found",
        ),
        l.t(
            "アドレスが正しいか確かめてください。",
            "アドレスが ただしいか みて ください。",
            "Check the address is correct.",
        ),
        Some((
            "/".into(),
            l.t("トップへ", "はじめの ページへ", "Go to the start")
                .into(),
        )),
    )
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

async fn set_lang(Path(code): Path<String>, Query(q): Query<Back>) -> Response {
    let l = Lang::from_code(&code);
    // Only a path on this site (never `//host`).
    let back = q
        .back
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
                l.code()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

fn today(p: &Portal) -> NaiveDate {
    p.now().date_naive()
}

fn wareki(l: Lang, d: NaiveDate) -> String {
    match l {
        Lang::En => d.format("%-d %B %Y").to_string(),
        _ => EraTable::standard().format_wareki(d),
    }
}

fn when(l: Lang, rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => {
            let t = t.with_timezone(&crate::jst());
            match l {
                Lang::En => t.format("%-d %B %Y %H:%M").to_string(),
                _ => format!("{} {}", wareki(l, t.date_naive()), t.format("%H時%M分")),
            }
        }
        Err(_) => String::new(),
    }
}

fn load_def(p: &Portal, tenant: &str, procedure: &str, version: u32) -> Option<Definition> {
    let src = p.store.definition(tenant, procedure, version).ok()??;
    Definition::parse(&src).ok()
}

fn tenant_name(p: &Portal, l: Lang, code: &str) -> Option<String> {
    p.store
        .tenants()
        .ok()?
        .into_iter()
        .find(|(c, _, _)| c == code)
        .map(|(_, ja, en)| if l == Lang::En { en } else { ja })
}

// ---------------------------------------------------------------- listing

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
    tenants: Vec<(String, String)>,
}

async fn home(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let tenants = match p.store.tenants() {
        Ok(t) => t,
        Err(e) => return oops(l, e),
    };
    html(
        StatusCode::OK,
        &HomePage {
            c: Chrome::new(
                l,
                l.t(
                    "オンライン申請",
                    "インターネットで もうしこむ",
                    "Apply online",
                ),
                "/",
            ),
            tenants: tenants
                .into_iter()
                .map(|(c, ja, en)| (c, if l == Lang::En { en } else { ja }))
                .collect(),
        },
    )
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    c: Chrome,
    tenant: String,
    procedures: Vec<(String, String, String)>,
}

async fn tenant_page(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    let l = lang_of(&headers);
    let Some(name) = tenant_name(&p, l, &tenant) else {
        return not_found(headers).await;
    };
    let list = match p.store.latest(&tenant) {
        Ok(x) => x,
        Err(e) => return oops(l, e),
    };
    let procedures = list
        .iter()
        .filter_map(|x| Definition::parse(&x.source).ok())
        .map(|d| {
            (
                d.id().to_owned(),
                d.procedure.title.get(l).to_owned(),
                d.procedure
                    .summary
                    .as_ref()
                    .map(|s| s.get(l).to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    html(
        StatusCode::OK,
        &TenantPage {
            c: Chrome::new(
                l,
                format!(
                    "{name} {}",
                    l.t(
                        "オンライン申請",
                        "インターネットで もうしこむ",
                        "online services"
                    )
                ),
                format!("/t/{tenant}"),
            ),
            tenant,
            procedures,
        },
    )
}

// ---------------------------------------------------------------- drafts

#[derive(Serialize, Deserialize, Clone)]
struct Draft {
    tenant: String,
    procedure: String,
    version: u32,
    answers: Answers,
    /// The signing nonce (署名番号), made when the signing step starts.
    #[serde(default)]
    nonce: Option<String>,
    /// A signature that verified over the answers as they stand.
    #[serde(default)]
    signature: Option<DraftSignature>,
    /// The 受付番号 of the filing this draft corrects (started from the
    /// status page of a filing the office asked to correct).
    #[serde(default)]
    corrects: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct DraftSignature {
    /// The CMS SignedData (DER), base64.
    cms: String,
    /// Made with a demo card.
    demo: bool,
}

struct Loaded {
    code: String,
    draft: Draft,
    def: Definition,
    expires_at: i64,
}

fn load_draft(p: &Portal, headers: &HeaderMap) -> Option<Loaded> {
    let code = cookie(headers, DRAFT_COOKIE).and_then(|c| seal::normalize_code(&c, 4))?;
    let (plain, expires_at) = p.store.load_draft(&code, p.now().timestamp()).ok()??;
    let draft: Draft = serde_json::from_slice(&plain).ok()?;
    let def = load_def(p, &draft.tenant, &draft.procedure, draft.version)?;
    Some(Loaded {
        code,
        draft,
        def,
        expires_at,
    })
}

/// Why a draft did not load: none (or expired), or it names a version of
/// its procedure that is not published here (a filing against an
/// unpublished version is refused, nothing sent).
fn draft_gone(p: &Portal, l: Lang, headers: &HeaderMap) -> Response {
    let unpublished_version = cookie(headers, DRAFT_COOKIE)
        .and_then(|c| seal::normalize_code(&c, 4))
        .and_then(|code| p.store.load_draft(&code, p.now().timestamp()).ok()?)
        .and_then(|(plain, _)| serde_json::from_slice::<Draft>(&plain).ok())
        .filter(|d| load_def(p, &d.tenant, &d.procedure, d.version).is_none())
        .map(|d| d.version);
    match unpublished_version {
        Some(v) => unpublished(l, v),
        None => no_draft(l),
    }
}

fn save(p: &Portal, code: &str, draft: &Draft) -> Result<i64, crate::store::StoreError> {
    let now = p.now().timestamp();
    let expires = now + p.config.draft_days * 86_400;
    let plain = serde_json::to_vec(draft).unwrap_or_default();
    p.store.save_draft(code, &plain, now, expires)?;
    Ok(expires)
}

fn draft_cookie(code: &str) -> String {
    format!("{DRAFT_COOKIE}={code}; Path=/; HttpOnly; SameSite=Strict")
}

fn no_draft(l: Lang) -> Response {
    message(
        l,
        StatusCode::OK,
        l.t("申請中の手続がありません", "とちゅうの てつづきが ありません", "You have no application in progress"),
        l.t(
            "保存期間が過ぎたか、別の端末で始めた手続です。再開コードがあれば再開できます。",
            "ほぞんの きかんが すぎたか、ちがう きかいで はじめた てつづきです。さいかい コードが あれば つづけられます。",
            "It may have expired, or you started it on another device. If you have a resume code you can continue.",
        ),
        Some(("/resume".into(), l.t("再開コードで再開する", "コードで つづける", "Continue with a resume code").into())),
    )
}

#[derive(Template)]
#[template(path = "start.html")]
struct StartPage {
    c: Chrome,
    tenant: String,
    tenant_name: String,
    procedure: String,
    summary: String,
    department: String,
    signature: bool,
    signature_available: bool,
    retention_days: u32,
    draft_days: i64,
}

async fn start_page(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path((tenant, procedure)): Path<(String, String)>,
) -> Response {
    let l = lang_of(&headers);
    let Some(tenant_name) = tenant_name(&p, l, &tenant) else {
        return not_found(headers).await;
    };
    let latest = match p.store.latest(&tenant) {
        Ok(x) => x,
        Err(e) => return oops(l, e),
    };
    let Some(def) = latest
        .iter()
        .find(|x| x.procedure == procedure)
        .and_then(|x| Definition::parse(&x.source).ok())
    else {
        return not_found(headers).await;
    };
    html(
        StatusCode::OK,
        &StartPage {
            c: Chrome::new(
                l,
                def.procedure.title.get(l),
                format!("/t/{tenant}/{procedure}"),
            ),
            tenant,
            tenant_name,
            procedure,
            summary: def
                .procedure
                .summary
                .as_ref()
                .map(|s| s.get(l).to_owned())
                .unwrap_or_default(),
            department: def
                .procedure
                .department
                .as_ref()
                .map(|s| s.get(l).to_owned())
                .unwrap_or_default(),
            signature: def.identity() == Identity::Signature,
            signature_available: p.config.signing.is_some(),
            retention_days: def.retention_days(),
            draft_days: p.config.draft_days,
        },
    )
}

async fn start(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path((tenant, procedure)): Path<(String, String)>,
) -> Response {
    let l = lang_of(&headers);
    let latest = match p.store.latest(&tenant) {
        Ok(x) => x,
        Err(e) => return oops(l, e),
    };
    let Some(found) = latest.iter().find(|x| x.procedure == procedure) else {
        return not_found(headers).await;
    };
    let Ok(def) = Definition::parse(&found.source) else {
        return not_found(headers).await;
    };
    let code = match seal::new_code(4) {
        Ok(c) => c,
        Err(e) => return oops(l, e),
    };
    let draft = Draft {
        tenant,
        procedure,
        version: found.version,
        answers: Answers::new(),
        nonce: None,
        signature: None,
        corrects: None,
    };
    if let Err(e) = save(&p, &code, &draft) {
        return oops(l, e);
    }
    let first = def
        .pages
        .first()
        .map(|x| x.id().to_owned())
        .unwrap_or_default();
    (
        [(header::SET_COOKIE, draft_cookie(&code))],
        Redirect::to(&format!("/d/p/{first}")),
    )
        .into_response()
}

// ---------------------------------------------------------------- pages

struct OptView {
    value: String,
    label: String,
    checked: bool,
    id: String,
}

struct PartView {
    name: String,
    id: String,
    value: String,
    label: String,
    class: &'static str,
    autocomplete: &'static str,
    inputmode: &'static str,
}

struct PersonView {
    heading: String,
    fields: Vec<FieldView>,
    remove: Option<String>,
}

struct FieldView {
    kind: &'static str,
    name: String,
    id: String,
    label: String,
    hint: String,
    optional: String,
    error: String,
    value: String,
    input_type: &'static str,
    inputmode: &'static str,
    autocomplete: &'static str,
    parts: Vec<PartView>,
    era_name: String,
    era_id: String,
    era_label: String,
    era_options: Vec<OptView>,
    options: Vec<OptView>,
    file: String,
    accept: String,
    people: Vec<PersonView>,
    add_label: String,
    count: usize,
}

fn html_id(key: &str) -> String {
    format!("f-{}", key.replace('.', "-"))
}

fn field_view(f: &Field, key: &str, a: &Answers, errors: &[FieldError], l: Lang) -> FieldView {
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let error = errors
        .iter()
        .find(|e| {
            e.field == key
                || e.input.starts_with(&format!("{key}.")) && f.kind() != FieldKind::People
        })
        .map(|e| e.message.get(l).to_owned())
        .unwrap_or_default();
    let kind = f.kind();
    let mut v = FieldView {
        kind: match kind {
            FieldKind::Date => "date",
            FieldKind::Address => "address",
            FieldKind::Choice | FieldKind::YesNo => "radios",
            FieldKind::Choices => "checkboxes",
            FieldKind::People => "people",
            FieldKind::File => "file",
            FieldKind::Text if f.max_chars.unwrap_or(200) > 100 => "textarea",
            _ => "input",
        },
        name: key.to_owned(),
        id: html_id(key),
        label: f.label.get(l).to_owned(),
        hint: f
            .hint
            .as_ref()
            .map(|h| h.get(l).to_owned())
            .unwrap_or_default(),
        optional: if f.required {
            String::new()
        } else {
            l.t("（任意）", "（かかなくても よい）", " (optional)")
                .to_owned()
        },
        error,
        value: get(key),
        input_type: match kind {
            FieldKind::Phone => "tel",
            FieldKind::Email => "email",
            _ => "text",
        },
        inputmode: match kind {
            FieldKind::Number | FieldKind::Phone => "numeric",
            _ => "",
        },
        autocomplete: match (kind, f.id()) {
            (FieldKind::Phone, _) => "tel",
            (FieldKind::Email, _) => "email",
            (FieldKind::Name, "applicant_name" | "claimant_name" | "guardian_name") => "name",
            _ => "off",
        },
        parts: vec![],
        era_name: format!("{key}.era"),
        era_id: html_id(&format!("{key}.era")),
        era_label: l.t("元号", "げんごう", "Era").to_owned(),
        era_options: vec![],
        options: vec![],
        file: String::new(),
        accept: f.accept.join(","),
        people: vec![],
        add_label: String::new(),
        count: 0,
    };
    match kind {
        FieldKind::Date => {
            let era = get(&format!("{key}.era"));
            let era = if era.is_empty() {
                "令和".to_owned()
            } else {
                era
            };
            let eras = [
                ("令和", "令和", "Reiwa"),
                ("平成", "平成", "Heisei"),
                ("昭和", "昭和", "Showa"),
                ("大正", "大正", "Taisho"),
                ("明治", "明治", "Meiji"),
                ("seireki", "西暦", "Western (AD)"),
            ];
            v.era_options = eras
                .iter()
                .map(|(value, ja, en)| OptView {
                    value: (*value).to_owned(),
                    label: (if l == Lang::En { *en } else { *ja }).to_owned(),
                    checked: era == *value,
                    id: String::new(),
                })
                .collect();
            for (part, ja, easy, en, class) in [
                ("year", "年", "ねん", "Year", "w4"),
                ("month", "月", "がつ", "Month", "w2"),
                ("day", "日", "にち", "Day", "w2"),
            ] {
                let name = format!("{key}.{part}");
                v.parts.push(PartView {
                    id: html_id(&name),
                    value: get(&name),
                    name,
                    label: l.t(ja, easy, en).to_owned(),
                    class,
                    autocomplete: "off",
                    inputmode: "numeric",
                });
            }
        }
        FieldKind::Address => {
            for (part, ja, easy, en, class, ac, im) in [
                (
                    "postal",
                    "郵便番号",
                    "ゆうびん ばんごう",
                    "Postcode",
                    "w8",
                    "postal-code",
                    "numeric",
                ),
                (
                    "address",
                    "住所",
                    "じゅうしょ",
                    "Address",
                    "wfull",
                    "street-address",
                    "",
                ),
            ] {
                let name = format!("{key}.{part}");
                v.parts.push(PartView {
                    id: html_id(&name),
                    value: get(&name),
                    name,
                    label: l.t(ja, easy, en).to_owned(),
                    class,
                    autocomplete: ac,
                    inputmode: im,
                });
            }
        }
        FieldKind::Choice | FieldKind::Choices | FieldKind::YesNo => {
            let chosen: Vec<String> = get(key).lines().map(|s| s.trim().to_owned()).collect();
            let opts: Vec<(String, String)> = if kind == FieldKind::YesNo {
                vec![
                    ("yes".into(), l.t("はい", "はい", "Yes").into()),
                    ("no".into(), l.t("いいえ", "いいえ", "No").into()),
                ]
            } else {
                f.options
                    .iter()
                    .map(|o| (o.value.clone(), o.label.get(l).to_owned()))
                    .collect()
            };
            v.options = opts
                .into_iter()
                .enumerate()
                .map(|(i, (value, label))| OptView {
                    checked: chosen.contains(&value),
                    id: html_id(&format!("{key}.{i}")),
                    value,
                    label,
                })
                .collect();
        }
        FieldKind::File => {
            let name = get(&format!("{key}.name"));
            if !name.is_empty() {
                let size: u64 = get(&format!("{key}.size")).parse().unwrap_or(0);
                let kb = size.div_ceil(1024);
                v.file = match l {
                    Lang::En => format!("{name} ({kb} KB)"),
                    _ => format!("{name}（{kb} KB）"),
                };
            }
            let kinds: Vec<&str> = f
                .accept
                .iter()
                .map(|t| match t.as_str() {
                    "application/pdf" => "PDF",
                    "image/jpeg" => "JPEG",
                    _ => "PNG",
                })
                .collect();
            let mb = f.max_bytes.unwrap_or(0) as f64 / 1_048_576.0;
            let limit = match l {
                Lang::En => format!("{} file, up to {mb:.0} MB.", kinds.join(", ")),
                Lang::Easy => format!("{}の ファイル、{mb:.0}MB まで。", kinds.join("・")),
                Lang::Ja => format!("{}形式、{mb:.0}MBまで。", kinds.join("・")),
            };
            v.hint = format!("{} {limit}", v.hint).trim().to_owned();
        }
        FieldKind::People => {
            let n = machi_count(key, a);
            v.count = n;
            v.add_label = l
                .t("もう一人追加する", "ひとを ふやす", "Add another person")
                .to_owned();
            v.people = (0..n)
                .map(|i| PersonView {
                    heading: match l {
                        Lang::En => format!("Person {}", i + 1),
                        _ => format!("{}人目", i + 1),
                    },
                    fields: f
                        .fields
                        .iter()
                        .map(|sub| {
                            field_view(sub, &format!("{key}.{i}.{}", sub.id()), a, errors, l)
                        })
                        .collect(),
                    remove: (n > 1).then(|| format!("remove:{key}:{i}")),
                })
                .collect();
        }
        _ => {}
    }
    v
}

fn machi_count(key: &str, a: &Answers) -> usize {
    a.get(&format!("{key}.count"))
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 20)
}

#[derive(Template)]
#[template(path = "page.html")]
struct FormPage {
    c: Chrome,
    procedure_title: String,
    page_id: String,
    hint: String,
    fields: Vec<FieldView>,
    errors: Vec<(String, String)>,
    back: String,
    from_check: bool,
    heading: String,
}

#[derive(Deserialize)]
struct From {
    from: Option<String>,
}

fn render_page(
    l: Lang,
    loaded: &Loaded,
    page_id: &str,
    errors: &[FieldError],
    from_check: bool,
) -> Response {
    let def = &loaded.def;
    let Some(page) = def.page(page_id) else {
        return no_draft(l);
    };
    let a = &loaded.draft.answers;
    // A field whose condition looks at a field on the same page is shown
    // (without script it cannot appear when the choice is made); it is
    // checked only when its condition holds.
    let same_page: Vec<&str> = page.fields.iter().map(|f| f.id()).collect();
    let fields: Vec<FieldView> = page
        .fields
        .iter()
        .filter(|f| {
            f.show_if
                .as_ref()
                .is_none_or(|c| c.holds(a) || same_page.contains(&c.field.as_str()))
        })
        .map(|f| {
            let mut v = field_view(f, f.id(), a, errors, l);
            if let Some(c) = &f.show_if
                && same_page.contains(&c.field.as_str())
                && let Some(src) = def.field(&c.field)
            {
                let when: Vec<String> = c
                    .equals
                    .iter()
                    .chain(c.one_of.iter().flatten())
                    .filter_map(|val| {
                        src.options
                            .iter()
                            .find(|o| &o.value == val)
                            .map(|o| o.label.get(l).to_owned())
                    })
                    .collect();
                if !when.is_empty() {
                    let note = match l {
                        Lang::En => format!("Only if you chose “{}”.", when.join("”, “")),
                        Lang::Easy => format!(
                            "「{}」を えらんだ ときだけ かいて ください。",
                            when.join("」「")
                        ),
                        Lang::Ja => format!(
                            "「{}」を選んだときだけ入力してください。",
                            when.join("」「")
                        ),
                    };
                    v.hint = format!("{note} {}", v.hint).trim().to_owned();
                }
            }
            v
        })
        .collect();
    let visible = def.visible_pages(a);
    let pos = visible.iter().position(|x| x.id() == page_id).unwrap_or(0);
    let back = if from_check {
        "/d/check".to_owned()
    } else if pos == 0 {
        format!("/t/{}/{}", loaded.draft.tenant, loaded.draft.procedure)
    } else {
        format!("/d/p/{}", visible[pos - 1].id())
    };
    let title = page.title.get(l);
    let errs: Vec<(String, String)> = errors
        .iter()
        .map(|e| (html_id(&e.input), e.message.get(l).to_owned()))
        .collect();
    html(
        StatusCode::OK,
        &FormPage {
            c: Chrome::new(
                l,
                if errs.is_empty() {
                    title.to_owned()
                } else {
                    format!(
                        "{}{title}",
                        l.t("エラー：", "まちがいが あります：", "Error: ")
                    )
                },
                format!("/d/p/{page_id}"),
            ),
            procedure_title: def.procedure.title.get(l).to_owned(),
            page_id: page_id.to_owned(),
            hint: page
                .hint
                .as_ref()
                .map(|h| h.get(l).to_owned())
                .unwrap_or_default(),
            fields,
            errors: errs,
            back,
            from_check,
            heading: title.to_owned(),
        },
    )
}

async fn page_get(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(page): Path<String>,
    Query(q): Query<From>,
) -> Response {
    let l = lang_of(&headers);
    let Some(mut loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    if let Some(pg) = loaded.def.page(&page).cloned() {
        prefill_first_person(&pg, &mut loaded.draft.answers);
    }
    render_page(l, &loaded, &page, &[], q.from.as_deref() == Some("check"))
}

/// The applicant as the first person of an "add another person" list
/// that includes them (B10): when nobody is entered yet, person 1's
/// `name` and `kana` are shown filled from the applicant's own answers
/// (`applicant_name`, `applicant_kana`), which the citizen may change.
/// Only a definition that asks for `applicant_name` has an applicant in
/// this sense (the 転出届: 「あなたを含めて」); a claimant's or guardian's
/// children are never prefilled. Shown only: the draft keeps what is
/// posted.
fn prefill_first_person(page: &machi_procedures::Page, a: &mut Answers) {
    for f in page.fields.iter().filter(|f| f.kind() == FieldKind::People) {
        let key = f.id();
        let first = format!("{key}.0.");
        if a.keys().any(|k| k.starts_with(&first)) {
            continue;
        }
        for sub in &f.fields {
            let from = match (sub.kind(), sub.id()) {
                (FieldKind::Name, "name") => "applicant_name",
                (FieldKind::Kana, "kana") => "applicant_kana",
                _ => continue,
            };
            if let Some(v) = a.get(from).filter(|v| !v.trim().is_empty()).cloned() {
                a.insert(format!("{first}{}", sub.id()), v);
            }
        }
    }
}

/// Keys of the answers that belong to a field.
fn owns(field: &str, key: &str) -> bool {
    key == field || key.starts_with(&format!("{field}."))
}

async fn page_post(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(page_id): Path<String>,
    mut form: Multipart,
) -> Response {
    let l = lang_of(&headers);
    let Some(mut loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    let Some(page) = loaded.def.page(&page_id).cloned() else {
        return not_found(headers).await;
    };
    let mut posted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut files: BTreeMap<String, (String, String, Vec<u8>)> = BTreeMap::new();
    let mut too_big = Vec::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                if let Some(file_name) = field.file_name().map(str::to_owned) {
                    let declared = field.content_type().unwrap_or("").to_owned();
                    match field.bytes().await {
                        Ok(b) if !b.is_empty() => {
                            files.insert(name, (file_name, declared, b.to_vec()));
                        }
                        Ok(_) => {}
                        Err(_) => too_big.push(name),
                    }
                } else if let Ok(text) = field.text().await {
                    posted.entry(name).or_default().push(text);
                }
            }
            Ok(None) => break,
            Err(_) => {
                return message(
                    l,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    l.t("送信できませんでした", "おくれませんでした", "The form could not be sent"),
                    l.t(
                        "ファイルが大きすぎるか、送信が途中で切れました。前のページに戻って、もう一度お試しください。",
                        "ファイルが おおきすぎるか、とちゅうで きれました。もう いちど ためして ください。",
                        "The file is too large or the upload was cut off. Go back and try again.",
                    ),
                    Some((format!("/d/p/{page_id}"), l.t("戻る", "もどる", "Back").into())),
                );
            }
        }
    }
    let action = posted
        .remove("_action")
        .and_then(|v| v.into_iter().next())
        .unwrap_or_default();
    let from_check = posted
        .remove("_from")
        .is_some_and(|v| v.iter().any(|x| x == "check"));
    // The answers may change: a signature made over the old ones no longer fits.
    loaded.draft.signature = None;
    let a = &mut loaded.draft.answers;
    let field_ids: Vec<String> = page.fields.iter().map(|f| f.id().to_owned()).collect();
    // Replace this page's answers with what was posted (files kept unless a
    // new one came).
    let file_fields: Vec<String> = page
        .fields
        .iter()
        .filter(|f| f.kind() == FieldKind::File)
        .map(|f| f.id().to_owned())
        .collect();
    a.retain(|k, _| {
        !field_ids.iter().any(|f| owns(f, k)) || file_fields.iter().any(|f| owns(f, k))
    });
    for (k, vs) in posted {
        if field_ids.iter().any(|f| owns(f, &k)) && !file_fields.iter().any(|f| owns(f, &k)) {
            let joined = vs
                .iter()
                .map(|s| s.trim_end_matches(['\r', '\n']))
                .collect::<Vec<_>>()
                .join("\n");
            a.insert(k, joined);
        }
    }
    // An upload is checked before it is kept: a file of the wrong type or
    // too large is refused with its reason, and the file kept before (if
    // any) stays the current one.
    let mut refused_files: Vec<FieldError> = Vec::new();
    for (k, (name, _declared, bytes)) in files {
        if let Some(f) = page.fields.iter().find(|f| f.id() == k)
            && file_fields.contains(&k)
        {
            // The type is what the bytes are, not what the browser said.
            let sniffed = file_type_of(&bytes).unwrap_or("unknown");
            if let Some(e) = file_error(f, &k, sniffed, bytes.len() as u64) {
                refused_files.push(e);
                continue;
            }
            let safe_name: String = name
                .chars()
                .filter(|c| !c.is_control() && !matches!(c, '/' | '\\'))
                .take(100)
                .collect();
            a.insert(format!("{k}.name"), safe_name);
            a.insert(format!("{k}.type"), sniffed.to_owned());
            a.insert(format!("{k}.size"), bytes.len().to_string());
            a.insert(format!("{k}.data"), B64.encode(&bytes));
        }
    }
    // フリガナ typed in hiragana is kept in katakana, as it will be sent.
    loaded.def.tidy_kana(&page, a);
    // "Add another person" and "remove".
    if let Some(key) = action.strip_prefix("add:") {
        let max = page
            .fields
            .iter()
            .find(|f| f.id() == key)
            .and_then(|f| f.max_items)
            .unwrap_or(1) as usize;
        let n = machi_count(key, a);
        a.insert(format!("{key}.count"), (n + 1).min(max).to_string());
        if let Err(e) = save(&p, &loaded.code, &loaded.draft) {
            return oops(l, e);
        }
        let dest = format!(
            "/d/p/{page_id}{}#{}",
            if from_check { "?from=check" } else { "" },
            html_id(&format!("{key}.{n}"))
        );
        return Redirect::to(&dest).into_response();
    }
    if let Some(rest) = action.strip_prefix("remove:")
        && let Some((key, idx)) = rest.rsplit_once(':')
        && let Ok(idx) = idx.parse::<usize>()
    {
        let n = machi_count(key, a);
        if idx < n && n > 1 {
            let prefix = format!("{key}.");
            let moved: Vec<(String, String)> = a
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix(&prefix)?;
                    let (i, sub) = rest.split_once('.')?;
                    let i: usize = i.parse().ok()?;
                    if i == idx {
                        None
                    } else {
                        let j = if i > idx { i - 1 } else { i };
                        Some((format!("{key}.{j}.{sub}"), v.clone()))
                    }
                })
                .collect();
            a.retain(|k, _| !(k.starts_with(&prefix) && k != &format!("{key}.count")));
            a.extend(moved);
            a.insert(format!("{key}.count"), (n - 1).to_string());
        }
        if let Err(e) = save(&p, &loaded.code, &loaded.draft) {
            return oops(l, e);
        }
        return Redirect::to(&format!(
            "/d/p/{page_id}{}",
            if from_check { "?from=check" } else { "" }
        ))
        .into_response();
    }
    if let Err(e) = save(&p, &loaded.code, &loaded.draft) {
        return oops(l, e);
    }
    if action == "save" && refused_files.is_empty() {
        return Redirect::to("/d/saved").into_response();
    }
    let ctx = CheckContext::new(today(&p));
    let mut errors = loaded.def.check_page(&page, &loaded.draft.answers, &ctx);
    // A refused upload's reason replaces what the page check says of
    // that field (the kept file, or that none was chosen).
    errors.retain(|e| !refused_files.iter().any(|r| r.field == e.field));
    errors.splice(0..0, refused_files);
    if !errors.is_empty() {
        return render_page(l, &loaded, &page_id, &errors, from_check);
    }
    let a = &loaded.draft.answers;
    if from_check {
        return match loaded.def.check_all(a, &ctx).first() {
            Some((first, _)) => Redirect::to(&format!("/d/p/{first}?from=check")).into_response(),
            None => Redirect::to("/d/check").into_response(),
        };
    }
    let visible = loaded.def.visible_pages(a);
    let pos = visible.iter().position(|x| x.id() == page_id);
    match pos.and_then(|i| visible.get(i + 1)) {
        Some(next) => Redirect::to(&format!("/d/p/{}", next.id())).into_response(),
        None => Redirect::to("/d/check").into_response(),
    }
}

// ---------------------------------------------------------------- check, submit

struct Row {
    label: String,
    values: Vec<String>,
    change: String,
    change_hidden: String,
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckPage {
    c: Chrome,
    procedure_title: String,
    sections: Vec<(String, Vec<Row>)>,
    problem: String,
    signature: bool,
    /// The 受付番号 this application corrects, or empty.
    corrects: String,
}

fn sections(p: &Portal, l: Lang, loaded: &Loaded) -> Vec<(String, Vec<Row>)> {
    let def = &loaded.def;
    let a = &loaded.draft.answers;
    let ctx = CheckContext::new(today(p));
    def.visible_pages(a)
        .into_iter()
        .map(|page| {
            let rows = def
                .visible_fields(page, a)
                .into_iter()
                .map(|f| {
                    let mut values = def.display_answer(f, f.id(), a, &ctx, l);
                    if values.is_empty() {
                        values.push(
                            l.t("（未入力）", "（かいて いない）", "(not given)")
                                .to_owned(),
                        );
                    }
                    Row {
                        label: f.label.get(l).to_owned(),
                        values,
                        change: format!("/d/p/{}?from=check#{}", page.id(), html_id(f.id())),
                        change_hidden: f.label.get(l).to_owned(),
                    }
                })
                .collect();
            (page.title.get(l).to_owned(), rows)
        })
        .collect()
}

fn render_check(p: &Portal, l: Lang, loaded: &Loaded, problem: &str) -> Response {
    let def = &loaded.def;
    let sections = sections(p, l, loaded);
    html(
        StatusCode::OK,
        &CheckPage {
            c: Chrome::new(
                l,
                l.t(
                    "入力内容の確認",
                    "かいた ことの かくにん",
                    "Check your answers",
                ),
                "/d/check",
            ),
            procedure_title: def.procedure.title.get(l).to_owned(),
            sections,
            problem: problem.to_owned(),
            signature: def.identity() == Identity::Signature,
            corrects: loaded.draft.corrects.clone().unwrap_or_default(),
        },
    )
}

async fn check_get(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    let ctx = CheckContext::new(today(&p));
    if let Some((first, _)) = loaded.def.check_all(&loaded.draft.answers, &ctx).first() {
        return Redirect::to(&format!("/d/p/{first}?from=check")).into_response();
    }
    render_check(&p, l, &loaded, "")
}

/// The content a filing carries and, for a signed procedure, signs: the
/// tenant, the procedure and its published version, the answers and the
/// signing nonce (see [`crate::signing::payload_of`]).
fn signed_content(loaded: &Loaded, ctx: &CheckContext) -> serde_json::Value {
    let answers = loaded.def.filing_payload(&loaded.draft.answers, ctx);
    let mut v = serde_json::json!({
        "tenant": loaded.draft.tenant,
        "procedure": loaded.draft.procedure,
        "version": loaded.draft.version,
        "answers": answers,
    });
    if let Some(n) = &loaded.draft.nonce {
        v["nonce"] = serde_json::Value::String(n.clone());
    }
    v
}

/// The signing nonce as the citizen reads it: eight groups of four.
fn nonce_display(nonce: &str) -> String {
    nonce
        .to_uppercase()
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn unpublished(l: Lang, version: u32) -> Response {
    message(
        l,
        StatusCode::CONFLICT,
        l.t(
            "この手続の版は公開されていません",
            "この てつづきは いま つかえません",
            "This version of the service is not published",
        ),
        &match l {
            Lang::En => format!(
                "Your answers were made on version {version} of this service, which is not published on this portal. Nothing was sent. Start the application again."
            ),
            Lang::Easy => "この てつづきの はんは いま ありません。なにも おくって いません。はじめから やりなおして ください。".to_owned(),
            Lang::Ja => format!(
                "入力した内容は手続の版{version}に対するものですが、この版はこのポータルで公開されていません。何も送信していません。最初からやり直してください。"
            ),
        },
        Some((
            "/".into(),
            l.t("トップへ", "はじめの ページへ", "Go to the start")
                .into(),
        )),
    )
}

fn signing_unavailable(p: &Portal, l: Lang, loaded: &Loaded) -> Response {
    render_check(
        p,
        l,
        loaded,
        l.t(
            "この手続にはマイナンバーカードによる電子署名が必要ですが、このポータルでは電子署名をまだ受け付けていません。入力内容は保存されています。窓口でお手続きください。",
            "この てつづきには マイナンバーカードの しょめいが いりますが、まだ つかえません。かいた ことは のこって います。まどぐちに きて ください。",
            "This service needs an electronic signature with your My Number Card, which this portal cannot accept yet. Your answers are saved. Please apply at the counter.",
        ),
    )
}

/// What is wrong before the signing step can be shown, as the response
/// sending the citizen where to go on (None: ready to sign).
fn signing_blocked(p: &Portal, l: Lang, loaded: &Loaded) -> Option<Response> {
    if loaded.def.identity() != Identity::Signature {
        return Some(Redirect::to("/d/check").into_response());
    }
    let ctx = CheckContext::new(today(p));
    if let Some((first, _)) = loaded.def.check_all(&loaded.draft.answers, &ctx).first() {
        return Some(Redirect::to(&format!("/d/p/{first}?from=check")).into_response());
    }
    if p.config.signing.is_none() {
        return Some(signing_unavailable(p, l, loaded));
    }
    None
}

/// Verifies a CMS SignedData over this draft's canonical form, now.
fn verify_draft(
    p: &Portal,
    loaded: &Loaded,
    cms: &[u8],
) -> Result<machi_sign::VerifiedFiling, SignRefusal> {
    let signing = p.config.signing.as_ref().ok_or(SignRefusal::Unavailable)?;
    let ctx = CheckContext::new(today(p));
    let payload =
        crate::signing::payload_of(&signed_content(loaded, &ctx)).ok_or(SignRefusal::NoNonce)?;
    let canonical = payload.canonical_bytes().map_err(SignRefusal::Sign)?;
    signing
        .verifier()
        .verify(cms, Some(&canonical), (p.config.clock)())
        .map_err(SignRefusal::Sign)
}

enum SignRefusal {
    Unavailable,
    NoNonce,
    Upload(crate::signing::UploadError),
    Sign(machi_sign::SignError),
    /// The nonce was used by the filing with this 受付番号 (when known).
    Replayed(Option<String>),
}

impl SignRefusal {
    fn message(&self, l: Lang) -> String {
        match self {
            SignRefusal::Unavailable => l
                .t(
                    "このポータルでは電子署名を受け付けていません。",
                    "この ページでは しょめいが できません。",
                    "This portal cannot accept signatures.",
                )
                .into(),
            SignRefusal::NoNonce => l
                .t(
                    "署名番号がありません。署名のページを開き直してください。",
                    "しょめい ばんごうが ありません。もう いちど ひらいて ください。",
                    "There is no signing number. Open the signing page again.",
                )
                .into(),
            SignRefusal::Upload(e) => e.message(l).into(),
            SignRefusal::Sign(e) => sign_error_message(e, l),
            SignRefusal::Replayed(None) => l
                .t(
                    "この署名はすでに別の申請に使われています。署名のページを開き直し、新しい署名番号で署名してください。",
                    "この しょめいは もう つかわれて います。もう いちど しょめい して ください。",
                    "This signature was already used for an application. Open the signing page again and sign with the new signing number.",
                )
                .into(),
            SignRefusal::Replayed(Some(r)) => match l {
                Lang::Ja => format!(
                    "この署名はすでに受付番号 {r} の申請に使われています。同じ申請を二度送った場合は、受付番号 {r} で受け付けています。別の申請にするには、署名のページを開き直し、新しい署名番号で署名してください。"
                ),
                Lang::Easy => format!(
                    "この しょめいは もう つかわれて います（うけつけ ばんごう {r}）。おなじ しんせいを 2かい おくった ときは、{r} で うけつけて います。"
                ),
                Lang::En => format!(
                    "This signature was already used for the application {r}. If you sent the same application twice, it was received as {r}. For another application, open the signing page again and sign with the new signing number."
                ),
            },
        }
    }
    fn target(&self) -> &'static str {
        match self {
            SignRefusal::Upload(_) | SignRefusal::Sign(_) => "signature",
            _ => "nonce",
        }
    }
}

/// A signature refusal for the citizen, with dates as people read them.
fn sign_error_message(e: &machi_sign::SignError, l: Lang) -> String {
    use machi_sign::SignError as E;
    let date = |t: &DateTime<chrono::Utc>| wareki(l, t.with_timezone(&crate::jst()).date_naive());
    match (e, l) {
        (E::Expired { not_after }, Lang::Ja) => format!(
            "電子証明書の有効期限が切れています（{}まで）。市区町村の窓口で更新してください。",
            date(not_after)
        ),
        (E::Expired { not_after }, Lang::En) => format!(
            "The certificate expired on {}. Renew it at your city office.",
            date(not_after)
        ),
        (E::NotYetValid { not_before }, Lang::Ja) => {
            format!("電子証明書の有効期間が始まっていません（{}から）。", date(not_before))
        }
        (E::NotYetValid { not_before }, Lang::En) => {
            format!("The certificate is not valid until {}.", date(not_before))
        }
        (E::Revoked { revoked_at }, Lang::Ja) => format!(
            "電子証明書は失効しています（{}に失効）。この証明書では署名できません。",
            date(revoked_at)
        ),
        (E::Revoked { revoked_at }, Lang::En) => format!(
            "The certificate was revoked on {}: it cannot be used to sign.",
            date(revoked_at)
        ),
        (E::SigningTimeInFuture { .. }, Lang::Ja) => {
            "署名日時が未来になっています。端末の時計を確かめて、署名し直してください。".into()
        }
        (E::SigningTimeInFuture { .. }, Lang::En) => {
            "The signing time is in the future. Check your device's clock and sign again.".into()
        }
        (E::BadStructure { .. }, Lang::En) => {
            "The signature file is not shaped as a signed application (one signer, signed attributes).".into()
        }
        (E::MalformedDer { .. }, Lang::En) => {
            "The signature file is malformed and cannot be read.".into()
        }
        _ => crate::signing::refusal(e, l),
    }
}

#[derive(Template)]
#[template(path = "sign.html")]
struct SignPage {
    c: Chrome,
    procedure_title: String,
    tenant_name: String,
    nonce: String,
    sections: Vec<(String, Vec<Row>)>,
    error: String,
    error_target: &'static str,
    demo_cards: Vec<(usize, String)>,
    demo_label: &'static str,
}

fn demo_label(l: Lang) -> &'static str {
    l.t(
        "デモ用カード",
        "デモ用カード（れんしゅう よう）",
        "デモ用カード — demo card",
    )
}

fn render_sign(p: &Portal, l: Lang, loaded: &Loaded, refusal: Option<&SignRefusal>) -> Response {
    let title = l.t("電子署名", "でんし しょめい", "Sign your application");
    html(
        StatusCode::OK,
        &SignPage {
            c: Chrome::new(
                l,
                if refusal.is_some() {
                    format!(
                        "{}{title}",
                        l.t("エラー：", "まちがいが あります：", "Error: ")
                    )
                } else {
                    title.to_owned()
                },
                "/d/sign",
            ),
            procedure_title: loaded.def.procedure.title.get(l).to_owned(),
            tenant_name: tenant_name(p, l, &loaded.draft.tenant).unwrap_or_default(),
            nonce: loaded
                .draft
                .nonce
                .as_deref()
                .map(nonce_display)
                .unwrap_or_default(),
            sections: sections(p, l, loaded),
            error: refusal.map(|r| r.message(l)).unwrap_or_default(),
            error_target: refusal.map_or("signature", |r| r.target()),
            demo_cards: p
                .config
                .demo_cards
                .iter()
                .flat_map(|d| d.people().map(|x| x.name.clone()).enumerate())
                .collect(),
            demo_label: demo_label(l),
        },
    )
}

/// The signing step (issue 11, item 3): the answers as they will be
/// signed, the signing nonce (署名番号), the document to download for the
/// card software, the upload of its signature file, and — in demo mode
/// only — signing with a demo card.
async fn sign_get(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(mut loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    if let Some(r) = signing_blocked(&p, l, &loaded) {
        return r;
    }
    // A fresh nonce unless this draft has one not yet used.
    let used = match &loaded.draft.nonce {
        Some(n) => match p.store.nonce_used(n) {
            Ok(u) => u,
            Err(e) => return oops(l, e),
        },
        None => true,
    };
    if used {
        match crate::signing::new_nonce() {
            Ok(n) => loaded.draft.nonce = Some(n),
            Err(e) => return oops(l, e),
        }
        loaded.draft.signature = None;
        if let Err(e) = save(&p, &loaded.code, &loaded.draft) {
            return oops(l, e);
        }
    }
    render_sign(&p, l, &loaded, None)
}

/// The exact bytes to sign (RFC 8785 JSON), for the card software.
async fn sign_document(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    if let Some(r) = signing_blocked(&p, l, &loaded) {
        return r;
    }
    let ctx = CheckContext::new(today(&p));
    let Some(payload) = crate::signing::payload_of(&signed_content(&loaded, &ctx)) else {
        return Redirect::to("/d/sign").into_response();
    };
    match payload.canonical_bytes() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"machi-filing.json\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => render_sign(&p, l, &loaded, Some(&SignRefusal::Sign(e))),
    }
}

async fn sign_post(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let l = lang_of(&headers);
    let Some(mut loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    if let Some(r) = signing_blocked(&p, l, &loaded) {
        return r;
    }
    let mut action = String::new();
    let mut demo_card = None;
    let mut upload: Option<Vec<u8>> = None;
    let mut too_large = false;
    loop {
        match form.next_field().await {
            Ok(Some(mut field)) => {
                let name = field.name().unwrap_or("").to_owned();
                if name == "signature" {
                    // Read by chunks, stopping past the limit.
                    let mut buf = Vec::new();
                    loop {
                        match field.chunk().await {
                            Ok(Some(c)) => {
                                if buf.len() + c.len() > crate::signing::MAX_SIGNATURE_UPLOAD {
                                    too_large = true;
                                    break;
                                }
                                buf.extend_from_slice(&c);
                            }
                            Ok(None) => break,
                            Err(_) => {
                                too_large = true;
                                break;
                            }
                        }
                    }
                    if too_large {
                        break;
                    }
                    upload = Some(buf);
                } else if let Ok(text) = field.text().await {
                    match name.as_str() {
                        "_action" => action = text,
                        "demo_card" => demo_card = text.trim().parse::<usize>().ok(),
                        _ => {}
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                too_large = true;
                break;
            }
        }
    }
    if loaded.draft.nonce.is_none() {
        return Redirect::to("/d/sign").into_response();
    }
    let cms = if too_large {
        Err(SignRefusal::Upload(crate::signing::UploadError::TooLarge))
    } else if action == "demo" {
        // DEMO ONLY: offered only when the portal is configured with demo cards.
        let Some(cards) = &p.config.demo_cards else {
            return not_found(headers).await;
        };
        let ctx = CheckContext::new(today(&p));
        match crate::signing::payload_of(&signed_content(&loaded, &ctx)) {
            Some(payload) => demo_card
                .and_then(|i| cards.sign(i, &payload, (p.config.clock)()))
                .ok_or(SignRefusal::NoNonce),
            None => Err(SignRefusal::NoNonce),
        }
    } else {
        crate::signing::signature_upload(upload.as_deref().unwrap_or_default())
            .map_err(SignRefusal::Upload)
    };
    let checked = cms.and_then(|cms| {
        let nonce = loaded.draft.nonce.as_deref().unwrap_or_default();
        match p.store.nonce_used(nonce) {
            Ok(true) => return Err(SignRefusal::Replayed(None)),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "portal: nonce look-up");
                return Err(SignRefusal::Unavailable);
            }
        }
        verify_draft(&p, &loaded, &cms).map(|_| cms)
    });
    match checked {
        Ok(cms) => {
            loaded.draft.signature = Some(DraftSignature {
                cms: B64.encode(&cms),
                demo: action == "demo",
            });
            if let Err(e) = save(&p, &loaded.code, &loaded.draft) {
                return oops(l, e);
            }
            Redirect::to("/d/confirm").into_response()
        }
        Err(r) => {
            tracing::info!(refusal = r.target(), "portal: a signature was refused");
            render_sign(&p, l, &loaded, Some(&r))
        }
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    c: Chrome,
    procedure_title: String,
    demo: bool,
    demo_label: &'static str,
    name: String,
    birth: String,
    sex: String,
    address: String,
    valid_until: String,
}

fn birth_label(l: Lang, b: &machi_sign::BirthDate) -> String {
    match b.date {
        Some(d) => wareki(l, d),
        None => b.raw.clone(),
    }
}

fn sex_label(l: Lang, s: &machi_sign::Sex) -> String {
    match (s, l) {
        (machi_sign::Sex::Male, Lang::En) => "Male".into(),
        (machi_sign::Sex::Female, Lang::En) => "Female".into(),
        (machi_sign::Sex::Other(_), Lang::En) => "Other or not stated".into(),
        (s, _) => s.label_ja().into(),
    }
}

/// The signature found valid: whom the certificate names (the basic four
/// items), before the citizen sends the filing.
async fn confirm_get(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    if let Some(r) = signing_blocked(&p, l, &loaded) {
        return r;
    }
    let Some(sig) = &loaded.draft.signature else {
        return Redirect::to("/d/sign").into_response();
    };
    let cms = B64.decode(&sig.cms).unwrap_or_default();
    match verify_draft(&p, &loaded, &cms) {
        Ok(v) => render_confirm(l, &loaded, &v, sig.demo),
        Err(r) => render_sign(&p, l, &loaded, Some(&r)),
    }
}

fn render_confirm(
    l: Lang,
    loaded: &Loaded,
    v: &machi_sign::VerifiedFiling,
    demo: bool,
) -> Response {
    let b4 = &v.certificate.basic_four;
    html(
        StatusCode::OK,
        &ConfirmPage {
            c: Chrome::new(
                l,
                l.t("署名の確認", "しょめいの かくにん", "Check the signature"),
                "/d/confirm",
            ),
            procedure_title: loaded.def.procedure.title.get(l).to_owned(),
            demo,
            demo_label: demo_label(l),
            name: b4.name.clone(),
            birth: birth_label(l, &b4.date_of_birth),
            sex: sex_label(l, &b4.sex),
            address: b4.address.clone(),
            valid_until: wareki(
                l,
                v.certificate
                    .not_after
                    .with_timezone(&crate::jst())
                    .date_naive(),
            ),
        },
    )
}

/// Sends the filing: through the one accept path ([`Portal::accept`]:
/// checked, signature verified again, sealed, stored by group commit with
/// the nonce marked used and the draft deleted), answered once committed.
async fn submit(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    let ctx = CheckContext::new(today(&p));
    let def = &loaded.def;
    if let Some((first, _)) = def.check_all(&loaded.draft.answers, &ctx).first() {
        return Redirect::to(&format!("/d/p/{first}?from=check")).into_response();
    }
    let (mut cms, mut demo) = (None, false);
    if def.identity() == Identity::Signature {
        if let Some(r) = signing_blocked(&p, l, &loaded) {
            return r;
        }
        let Some(sig) = &loaded.draft.signature else {
            return Redirect::to("/d/sign").into_response();
        };
        cms = Some(B64.decode(&sig.cms).unwrap_or_default());
        demo = sig.demo;
    }
    let sub = crate::accept::Submission {
        tenant: loaded.draft.tenant.clone(),
        procedure: loaded.draft.procedure.clone(),
        version: loaded.draft.version,
        answers: loaded.draft.answers.clone(),
        nonce: loaded.draft.nonce.clone(),
        signature: cms,
        demo,
        draft_code: Some(loaded.code.clone()),
        corrects: loaded.draft.corrects.clone(),
    };
    // Verifying, sealing and waiting for the commit block: off the
    // async workers, so other requests join the same commit.
    let accepted = {
        let p = p.clone();
        tokio::task::spawn_blocking(move || p.accept(&sub)).await
    };
    let receipt = match accepted {
        Ok(Ok(receipt)) => receipt,
        Ok(Err(r)) => {
            use crate::accept::Detail;
            tracing::info!(refusal = r.code, "portal: a filing was refused");
            return match (r.code, r.detail) {
                ("not_published", _) => unpublished(l, loaded.draft.version),
                (_, Detail::Input(_)) => Redirect::to("/d/check").into_response(),
                (_, Detail::Sign(e)) => render_sign(&p, l, &loaded, Some(&SignRefusal::Sign(e))),
                (_, Detail::Replayed { earlier }) => {
                    render_sign(&p, l, &loaded, Some(&SignRefusal::Replayed(earlier)))
                }
                ("already_sent", _) => no_draft(l),
                ("signature_unavailable", _) => signing_unavailable(&p, l, &loaded),
                ("signature_required", _) => Redirect::to("/d/sign").into_response(),
                _ => oops(l, r.en),
            };
        }
        Err(e) => return oops(l, e),
    };
    (
        [(
            header::SET_COOKIE,
            format!("{DRAFT_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to(&format!("/status/{receipt}?new=1")),
    )
        .into_response()
}

// ---------------------------------------------------------------- save and resume

#[derive(Template)]
#[template(path = "saved.html")]
struct SavedPage {
    c: Chrome,
    code: String,
    until: String,
    next: String,
}

async fn saved(State(p): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(loaded) = load_draft(&p, &headers) else {
        return draft_gone(&p, l, &headers);
    };
    let until = DateTime::from_timestamp(loaded.expires_at, 0)
        .map(|t| t.with_timezone(&crate::jst()).to_rfc3339())
        .map(|s| when(l, &s))
        .unwrap_or_default();
    let ctx = CheckContext::new(today(&p));
    let next = match loaded.def.check_all(&loaded.draft.answers, &ctx).first() {
        Some((page, _)) => format!("/d/p/{page}"),
        None => "/d/check".into(),
    };
    html(
        StatusCode::OK,
        &SavedPage {
            c: Chrome::new(
                l,
                l.t(
                    "保存しました",
                    "ほぞん しました",
                    "Your answers have been saved",
                ),
                "/d/saved",
            ),
            code: loaded.code,
            until,
            next,
        },
    )
}

#[derive(Template)]
#[template(path = "resume.html")]
struct ResumePage {
    c: Chrome,
    value: String,
    error: String,
}

async fn resume_get(headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    html(
        StatusCode::OK,
        &ResumePage {
            c: Chrome::new(
                l,
                l.t(
                    "保存した申請を再開する",
                    "とちゅうの てつづきを つづける",
                    "Continue a saved application",
                ),
                "/resume",
            ),
            value: String::new(),
            error: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn resume_post(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let l = lang_of(&headers);
    let found = seal::normalize_code(&f.code, 4).and_then(|code| {
        let (plain, _) = p.store.load_draft(&code, p.now().timestamp()).ok()??;
        let d: Draft = serde_json::from_slice(&plain).ok()?;
        let def = load_def(&p, &d.tenant, &d.procedure, d.version)?;
        Some((code, d, def))
    });
    match found {
        Some((code, d, def)) => {
            let ctx = CheckContext::new(today(&p));
            let next = match def.check_all(&d.answers, &ctx).first() {
                Some((page, _)) => format!("/d/p/{page}"),
                None => "/d/check".into(),
            };
            ([(header::SET_COOKIE, draft_cookie(&code))], Redirect::to(&next)).into_response()
        }
        None => html(
            StatusCode::OK,
            &ResumePage {
                c: Chrome::new(
                    l,
                    format!(
                        "{}{}",
                        l.t("エラー：", "まちがいが あります：", "Error: "),
                        l.t("保存した申請を再開する", "とちゅうの てつづきを つづける", "Continue a saved application")
                    ),
                    "/resume",
                ),
                value: f.code.chars().take(40).collect(),
                error: if f.code.trim().is_empty() {
                    l.t("再開コードを入力してください", "コードを かいて ください", "Enter your resume code")
                } else {
                    l.t(
                        "この再開コードの申請は見つかりません。コードを確かめてください。保存期間を過ぎた申請は削除されています",
                        "この コードの てつづきは ありません。コードを みて ください。ふるい ものは けして います",
                        "No saved application has this code. Check the code; saved applications are deleted when they expire",
                    )
                }
                .to_owned(),
            },
        ),
    }
}

// ---------------------------------------------------------------- status

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    c: Chrome,
    receipt: String,
    is_new: bool,
    procedure_title: String,
    tenant_name: String,
    received: String,
    status_label: String,
    status_class: &'static str,
    status_at: String,
    reason: String,
    next: String,
    /// The office asked for a correction: the citizen may send the
    /// application again, corrected.
    can_correct: bool,
}

#[derive(Deserialize)]
struct NewFlag {
    new: Option<String>,
}

async fn status_page(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(receipt): Path<String>,
    Query(q): Query<NewFlag>,
) -> Response {
    let l = lang_of(&headers);
    let row = seal::normalize_code(&receipt, 3)
        .and_then(|r| p.store.filing(&r).ok().flatten().map(|row| (r, row)));
    let Some((receipt, row)) = row else {
        return html(
            StatusCode::NOT_FOUND,
            &StatusForm {
                c: Chrome::new(
                    l,
                    format!(
                        "{}{}",
                        l.t("エラー：", "まちがいが あります：", "Error: "),
                        l.t(
                            "申請の状況",
                            "てつづきの いま",
                            "Check the progress of an application"
                        )
                    ),
                    "/status",
                ),
                value: receipt.chars().take(40).collect(),
                error: l
                    .t(
                        "この受付番号の申請は見つかりません。番号を確かめてください",
                        "この ばんごうの てつづきは ありません。ばんごうを みて ください",
                        "No application has this reference number. Check the number",
                    )
                    .into(),
            },
        );
    };
    let def = load_def(&p, &row.tenant, &row.procedure, row.version);
    let (label, class, next) = match row.status {
        Status::Received => (
            l.t("受け付けました", "うけつけ ました", "Received"),
            "received",
            l.t(
                "担当課が内容を確認します。結果はこのページでお知らせします。",
                "やくしょが みます。けっかは この ページで しらせます。",
                "The office will look at it. The result will be shown on this page.",
            ),
        ),
        Status::UnderReview => (
            l.t("審査中", "みて います", "Under review"),
            "review",
            l.t(
                "担当課が審査しています。",
                "やくしょが みて います。",
                "The office is reviewing it.",
            ),
        ),
        Status::CorrectionRequested => (
            l.t(
                "補正をお願いしています",
                "なおして ください",
                "Correction requested",
            ),
            "correction",
            l.t(
                "「理由・連絡事項」をご覧になり、内容を直してもう一度申請してください。わからないことは担当課にお問い合わせください。",
                "「りゆう」を よんで、なおして もう いちど もうしこんで ください。わからない ときは やくしょに きいて ください。",
                "Read the reason, then correct your application and send it again. If you have questions, contact the office.",
            ),
        ),
        Status::Approved => (
            l.t("承認されました", "みとめられ ました", "Approved"),
            "approved",
            l.t(
                "手続は完了しました。",
                "てつづきは おわりました。",
                "Your application is complete.",
            ),
        ),
        Status::Rejected => (
            l.t(
                "受理できませんでした",
                "うけつけ できません でした",
                "Rejected",
            ),
            "rejected",
            l.t(
                "理由は「理由・連絡事項」のとおりです。",
                "りゆうは 「りゆう」の とおりです。",
                "The reason is given above.",
            ),
        ),
        Status::NotAccepted => (
            l.t(
                "受け付けられませんでした",
                "うけつけ られません でした",
                "Could not be accepted",
            ),
            "rejected",
            l.t(
                "この申請は市区町村に届いていません。お手数ですが、もう一度はじめから申請してください。わからないことは担当課にお問い合わせください（受付番号をお伝えください）。",
                "この しんせいは やくしょに とどいて いません。もう いちど はじめから しんせい して ください。わからない ときは やくしょに きいて ください（うけつけ ばんごうを つたえて ください）。",
                "Your application has not reached the city office. Please apply again from the start. If you have questions, contact the office and give your reference number.",
            ),
        ),
    };
    let reason = match (row.status, row.refusal) {
        (Status::NotAccepted, r) => refusal_words(l, r.unwrap_or(Refusal::Unreadable)).to_owned(),
        _ => row.reason.unwrap_or_default(),
    };
    html(
        StatusCode::OK,
        &StatusPage {
            c: Chrome::new(
                l,
                if q.new.is_some() {
                    l.t(
                        "申請を受け付けました",
                        "もうしこみを うけつけ ました",
                        "Application submitted",
                    )
                } else {
                    l.t("申請の状況", "てつづきの いま", "Application progress")
                },
                format!("/status/{receipt}"),
            ),
            is_new: q.new.is_some(),
            procedure_title: def
                .map(|d| d.procedure.title.get(l).to_owned())
                .unwrap_or_default(),
            tenant_name: tenant_name(&p, l, &row.tenant).unwrap_or_default(),
            received: when(l, &row.received_at),
            status_label: label.to_owned(),
            status_class: class,
            status_at: when(l, &row.status_at),
            reason,
            next: next.to_owned(),
            can_correct: row.status == Status::CorrectionRequested,
            receipt,
        },
    )
}

/// Correct and send again (issue 11, item 5): from the status page of a
/// filing the office asked to correct, a new application of the same
/// procedure (its version published now) that names the one it corrects.
/// The answers are not filled in again: the portal keeps nothing of a
/// filing once the back office has it (三層分離), and the correction
/// request carries only the clerk's message, so there is nothing here to
/// fill them from.
async fn correct_start(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Path(receipt): Path<String>,
) -> Response {
    let l = lang_of(&headers);
    let row = seal::normalize_code(&receipt, 3)
        .and_then(|r| p.store.filing(&r).ok().flatten().map(|row| (r, row)));
    let Some((receipt, row)) = row else {
        return not_found(headers).await;
    };
    if row.status != Status::CorrectionRequested {
        return Redirect::to(&format!("/status/{receipt}")).into_response();
    }
    let latest = match p.store.latest(&row.tenant) {
        Ok(x) => x,
        Err(e) => return oops(l, e),
    };
    let Some((version, def)) = latest
        .iter()
        .find(|x| x.procedure == row.procedure)
        .and_then(|x| Definition::parse(&x.source).ok().map(|d| (x.version, d)))
    else {
        return not_found(headers).await;
    };
    let code = match seal::new_code(4) {
        Ok(c) => c,
        Err(e) => return oops(l, e),
    };
    let draft = Draft {
        tenant: row.tenant,
        procedure: row.procedure,
        version,
        answers: Answers::new(),
        nonce: None,
        signature: None,
        corrects: Some(receipt),
    };
    if let Err(e) = save(&p, &code, &draft) {
        return oops(l, e);
    }
    let first = def
        .pages
        .first()
        .map(|x| x.id().to_owned())
        .unwrap_or_default();
    (
        [(header::SET_COOKIE, draft_cookie(&code))],
        Redirect::to(&format!("/d/p/{first}")),
    )
        .into_response()
}

/// Why the back office could not accept a filing, in the citizen's words.
fn refusal_words(l: Lang, r: Refusal) -> &'static str {
    match r {
        Refusal::Unreadable => l.t(
            "市区町村で申請のデータを開けませんでした（送る途中でこわれたか、正しく封がされていませんでした）。",
            "やくしょで しんせいの データを ひらけません でした。",
            "The city office could not open the application data (it was damaged on the way or not sealed correctly).",
        ),
        Refusal::Replayed => l.t(
            "この申請の電子署名は、すでに別の申請に使われていました。同じ署名は一度しか使えません。",
            "この しんせいの しょめいは、もう ほかの しんせいで つかわれて いました。おなじ しょめいは 1かい しか つかえません。",
            "The electronic signature on this application had already been used for another application. A signature can be used only once.",
        ),
        Refusal::Procedure => l.t(
            "この申請に使われた申請書（手続の様式）を、市区町村で確認できませんでした。",
            "この しんせいに つかった しんせいしょを、やくしょで たしかめられません でした。",
            "The city office could not confirm the form this application was made on.",
        ),
        Refusal::Answers => l.t(
            "申請の内容が、この手続の決まり（入力の条件）に合っていませんでした。",
            "しんせいの ないようが、てつづきの きまりに あって いません でした。",
            "The answers in the application did not meet the rules of this form.",
        ),
    }
}

#[derive(Template)]
#[template(path = "status_form.html")]
struct StatusForm {
    c: Chrome,
    value: String,
    error: String,
}

async fn status_form(headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    html(
        StatusCode::OK,
        &StatusForm {
            c: Chrome::new(
                l,
                l.t(
                    "申請の状況",
                    "てつづきの いま",
                    "Check the progress of an application",
                ),
                "/status",
            ),
            value: String::new(),
            error: String::new(),
        },
    )
}

async fn status_find(headers: HeaderMap, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let l = lang_of(&headers);
    match seal::normalize_code(&f.code, 3) {
        Some(r) => Redirect::to(&format!("/status/{r}")).into_response(),
        None => html(
            StatusCode::OK,
            &StatusForm {
                c: Chrome::new(
                    l,
                    format!(
                        "{}{}",
                        l.t("エラー：", "まちがいが あります：", "Error: "),
                        l.t(
                            "申請の状況",
                            "てつづきの いま",
                            "Check the progress of an application"
                        )
                    ),
                    "/status",
                ),
                value: f.code.chars().take(40).collect(),
                error: l
                    .t(
                        "受付番号は英数字12文字です（例：7KQ2-M9XD-3TPA）",
                        "うけつけ ばんごうは 12もじです（れい：7KQ2-M9XD-3TPA）",
                        "A reference number has 12 letters and digits, like 7KQ2-M9XD-3TPA",
                    )
                    .into(),
            },
        ),
    }
}

// ---------------------------------------------------------------- back office

fn authorized(p: &Portal, headers: &HeaderMap) -> bool {
    let Some(want) = &p.config.pull_token_sha256 else {
        return false;
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let got = hex::encode(Sha256::digest(token.trim().as_bytes()));
    // Both are 64 hex characters: compare without an early exit.
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "code": "unauthorized",
            "message_ja": "連携の認証に失敗しました。",
            "message_en": "the back office token is missing or wrong",
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// Sealed filings not yet acknowledged, oldest first.
async fn pull(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Response {
    if !authorized(&p, &headers) {
        return unauthorized();
    }
    let rows = match p.store.pending(q.limit.unwrap_or(100).clamp(1, 1000)) {
        Ok(rows) => rows,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    // The published text of each version the batch's filings name, once
    // each: the back office validates and keeps it (issue 11, item 1), so
    // it shows a tenant's own procedure or new version with its labels.
    let mut named: std::collections::BTreeSet<(String, String, u32)> = Default::default();
    for (_, tenant, procedure, version, _, _) in &rows {
        named.insert((tenant.clone(), procedure.clone(), *version));
    }
    let mut definitions = Vec::new();
    for (tenant, procedure, version) in named {
        match p.store.definition(&tenant, &procedure, version) {
            Ok(Some(source)) => definitions.push(serde_json::json!({
                "tenant": tenant, "procedure": procedure, "version": version, "source": source,
            })),
            Ok(None) => {}
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
    axum::Json(serde_json::json!({
        "filings": rows.into_iter().map(|(id, tenant, procedure, version, received_at, sealed)| serde_json::json!({
            "id": id, "tenant": tenant, "procedure": procedure, "version": version,
            "received_at": received_at, "sealed": B64.encode(sealed),
        })).collect::<Vec<_>>(),
        "definitions": definitions,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Ack {
    /// Stored by the back office.
    #[serde(default)]
    ids: Vec<String>,
    /// Refused on import and recorded by the back office (issue 11).
    #[serde(default)]
    refused: Vec<AckRefused>,
    /// Refused on import, but may pass later: offered after the others.
    #[serde(default)]
    deferred: Vec<String>,
}

#[derive(Deserialize)]
struct AckRefused {
    id: String,
    reason: String,
}

/// The back office's acknowledgement: the sealed copies of the filings
/// it stored are deleted; those it refused and recorded are deleted too
/// and marked not accepted with the reason (the status page tells the
/// citizen), never offered again; those it deferred stay, offered after
/// the others.
async fn ack(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    axum::Json(a): axum::Json<Ack>,
) -> Response {
    if !authorized(&p, &headers) {
        return unauthorized();
    }
    let mut refused = Vec::with_capacity(a.refused.len());
    for r in a.refused {
        let Some(reason) = Refusal::parse(&r.reason) else {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "code": "invalid_refusal",
                    "message_ja": "受付できなかった理由の区分が正しくありません。",
                    "message_en": "the refusal reason is not one the portal knows",
                })),
            )
                .into_response();
        };
        refused.push((r.id, reason));
    }
    let now = p.now().to_rfc3339();
    let r = p.store.acknowledge(&a.ids).and_then(|deleted| {
        Ok((
            deleted,
            p.store.refuse(&refused, &now)?,
            p.store.defer(&a.deferred)?,
        ))
    });
    match r {
        Ok((deleted, refused, deferred)) => axum::Json(serde_json::json!({
            "deleted": deleted, "refused": refused, "deferred": deferred,
        }))
        .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct StatusUpdate {
    receipt: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// A status from the back office.
async fn push_status(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    axum::Json(u): axum::Json<StatusUpdate>,
) -> Response {
    if !authorized(&p, &headers) {
        return unauthorized();
    }
    let (Some(receipt), Some(status)) = (
        seal::normalize_code(&u.receipt, 3),
        // Not accepted is said by the acknowledgement only.
        Status::parse(&u.status).filter(|s| *s != Status::NotAccepted),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "code": "invalid_status",
                "message_ja": "受付番号か状況が正しくありません。",
                "message_en": "the receipt number or the status is not valid",
            })),
        )
            .into_response();
    };
    let reason: Option<String> = u.reason.map(|r| r.chars().take(1000).collect());
    match p
        .store
        .set_status(&receipt, status, reason.as_deref(), &p.now().to_rfc3339())
    {
        Ok(true) => axum::Json(serde_json::json!({ "updated": true })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "code": "unknown_receipt",
                "message_ja": "この受付番号の申請はありません。",
                "message_en": "no filing has this receipt number",
            })),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

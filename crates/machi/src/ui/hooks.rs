//! Webhook subscriptions (通知先) for the tenant administrator: every
//! client's subscriptions with their state in words, what was last
//! delivered and the last attempt in 和暦, the recent attempts; subscribing
//! a client (event types chosen by name, the secret shown once), rotating
//! the secret, pausing, resuming (from the first event not yet delivered)
//! and replaying from a chosen event. Every action is in the access log
//! (`webhook.*`), as the API's are.

use askama::Template;
use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;
use machi_domain::ids::MunicipalityCode;

use super::forms::FormData;
use super::{Chrome, Ctx, Lang, UiError, html, when};
use crate::api::AppState;
use crate::service::events;
use crate::service::hooks::{
    NewSubscription, PRIVATE_ONLY, PauseReason, ReplayPoint, SubscriptionSummary,
};
use crate::store::hooks::Attempt;

/// A subscription as a row of the list or the head of its page.
pub struct SubRow {
    pub id: i64,
    pub client_id: String,
    pub url: String,
    /// The event types in words.
    pub types: String,
    /// The state in words.
    pub state: String,
    /// `ok`, `warn` (failing) or `error` (stopped): the row's styling.
    pub tone: &'static str,
    pub stopped: bool,
    pub failing: bool,
    pub active: bool,
    /// The position in words: 第N号まで処理済み.
    pub position: String,
    pub last_delivered: String,
    pub last_attempt: String,
    pub created: String,
}

/// One attempt in words.
pub struct AttemptRow {
    pub at: String,
    pub seq: i64,
    pub result: String,
    pub ok: bool,
    pub latency_ms: i64,
    /// The receiver's or the network's own words (technical), or empty.
    pub detail: String,
}

/// An event type a subscription may be given: (type code, label, chosen).
pub struct TypeChoice {
    pub code: String,
    pub label: String,
    pub checked: bool,
}

/// The new subscription's secret, shown once.
pub struct NewSecret {
    pub id: i64,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "subscriptions.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<SubRow>,
    clients: Vec<(String, String, bool)>,
    choices: Vec<TypeChoice>,
    url: String,
    from_start: bool,
    error: Option<String>,
    secret: Option<NewSecret>,
}

#[derive(Template)]
#[template(path = "subscription.html")]
struct DetailPage {
    c: Chrome,
    s: SubRow,
    attempts: Vec<AttemptRow>,
    /// Replay starting points: (sequence, words).
    points: Vec<(i64, String)>,
    /// The first event not yet delivered.
    next_seq: i64,
    error: Option<String>,
    secret: Option<NewSecret>,
}

fn type_words(t: &str, l: Lang) -> String {
    match events::type_label(t) {
        Some((ja, en)) => l.t(&ja, &en).to_string(),
        // Not published by machi (an old type kept on a subscription).
        None => l.t("その他の種類", "another type").to_string(),
    }
}

/// A subscription's types in words; a whole group (every change, every
/// support-measure step) by the group's name.
fn types_text(types: &[String], l: Lang) -> String {
    if types.is_empty() {
        return l.t("すべての種類", "every type").to_string();
    }
    let known = events::known_types();
    let mut parts = Vec::new();
    let mut rest: Vec<&String> = types.iter().collect();
    // A stored pattern (`prefix.*`) stands for every type under it, later
    // ones included; rows from before patterns were kept list the types.
    let covers = |k: &String| types.iter().any(|t| events::type_matches(t, k));
    rest.retain(|t| !t.ends_with('*'));
    for (prefix, ja, en) in [
        (
            "jp.machi.registry.change.",
            "異動（すべて）",
            "Changes (all)",
        ),
        (
            "jp.machi.support.measure.",
            "支援措置（すべて）",
            "Support measures (all)",
        ),
    ] {
        let group: Vec<&String> = known.iter().filter(|k| k.starts_with(prefix)).collect();
        if group.iter().all(|g| covers(g)) {
            parts.push(l.t(ja, en).to_string());
            rest.retain(|t| !t.starts_with(prefix));
        }
    }
    // Any other pattern: the types it takes today, by name (those of a
    // group named above left out).
    for t in types.iter().filter(|t| t.ends_with('*')) {
        for k in known.iter().filter(|k| events::type_matches(t, k)) {
            let grouped = ["jp.machi.registry.change.", "jp.machi.support.measure."]
                .iter()
                .any(|g| {
                    k.starts_with(g) && known.iter().filter(|x| x.starts_with(g)).all(&covers)
                });
            let w = type_words(k, l);
            if !grouped && !parts.contains(&w) {
                parts.push(w);
            }
        }
    }
    parts.extend(rest.into_iter().map(|t| type_words(t, l)));
    parts.join(l.t("、", ", "))
}

fn state_text(s: &SubscriptionSummary, l: Lang) -> (String, &'static str) {
    let since = |t: Option<i64>| t.map(when).unwrap_or_default();
    match s.stopped {
        Some(PauseReason::Failing) => (
            if l.en {
                format!(
                    "Paused: deliveries failed for more than 72 hours (failing since {}). Resume once the receiver is back.",
                    since(s.failing_since)
                )
            } else {
                format!(
                    "一時停止中：72時間以上届かなかったため自動で停止しました（{}から失敗）。受け手の復旧後に再開してください。",
                    since(s.failing_since)
                )
            },
            "error",
        ),
        Some(PauseReason::ByRequest) => (
            if l.en {
                format!(
                    "Paused by hand, by the administrator or the client ({}). Nothing is sent until it is resumed.",
                    since(s.paused_at)
                )
            } else {
                format!(
                    "一時停止中：管理者または連携先が停止しました（{}）。再開するまで送りません。",
                    since(s.paused_at)
                )
            },
            "error",
        ),
        Some(PauseReason::Gone) => (
            if l.en {
                format!(
                    "Stopped: the receiver answered 410 Gone, asking to end the subscription ({}).",
                    since(s.paused_at)
                )
            } else {
                format!(
                    "停止：受け手が 410 Gone（購読の終了）を返しました（{}）。",
                    since(s.paused_at)
                )
            },
            "error",
        ),
        None if s.failed_attempts > 0 => (
            if l.en {
                format!(
                    "Failing since {} ({} failed attempts; next retry {}).",
                    since(s.failing_since),
                    s.failed_attempts,
                    since(s.next_attempt_at)
                )
            } else {
                format!(
                    "失敗が続いています：{}から {} 回失敗（次の再送 {}）。",
                    since(s.failing_since),
                    s.failed_attempts,
                    since(s.next_attempt_at)
                )
            },
            "warn",
        ),
        None => (
            l.t("配信中（正常）", "Active (delivering)").to_string(),
            "ok",
        ),
    }
}

fn attempt_result(a: &Attempt, l: Lang) -> (String, bool) {
    match a.status {
        Some(c @ 200..=299) => (
            if l.en {
                format!("Accepted (HTTP {c})")
            } else {
                format!("受信されました（HTTP {c}）")
            },
            true,
        ),
        Some(410) => (
            l.t(
                "購読の終了を求められました（HTTP 410）",
                "Asked to end the subscription (HTTP 410)",
            )
            .to_string(),
            false,
        ),
        Some(429) => (
            l.t(
                "受け手が混雑しています（HTTP 429）",
                "The receiver is busy (HTTP 429)",
            )
            .to_string(),
            false,
        ),
        Some(c) => (
            if l.en {
                format!("Refused by the receiver (HTTP {c})")
            } else {
                format!("受け手がエラーを返しました（HTTP {c}）")
            },
            false,
        ),
        None if a.error.as_deref().is_some_and(|e| e.contains(PRIVATE_ONLY)) => (
            l.t(
                "送りませんでした：送り先の名前が内部ネットワークのアドレスを指しています",
                "Not sent: the callback's host name points at a private address",
            )
            .to_string(),
            false,
        ),
        None => (
            l.t(
                "応答がありません（接続できない、または時間切れ）",
                "No answer (no connection, or timed out)",
            )
            .to_string(),
            false,
        ),
    }
}

fn attempt_row(a: &Attempt, l: Lang) -> AttemptRow {
    let (result, ok) = attempt_result(a, l);
    AttemptRow {
        at: when(a.at),
        seq: a.seq,
        result,
        ok,
        latency_ms: a.latency_ms,
        detail: a
            .error
            .as_deref()
            .filter(|_| a.status.is_none())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    }
}

fn sub_row(s: &SubscriptionSummary, l: Lang) -> SubRow {
    let (state, tone) = state_text(s, l);
    SubRow {
        id: s.subscription_id,
        client_id: s.client_id.clone(),
        url: s.url.clone(),
        types: types_text(&s.types, l),
        state,
        tone,
        stopped: s.stopped.is_some(),
        failing: s.stopped.is_none() && s.failed_attempts > 0,
        active: s.stopped.is_none(),
        position: if s.position == 0 {
            l.t("まだありません", "none yet").to_string()
        } else if l.en {
            format!("up to event {}", s.position)
        } else {
            format!("第{}号まで", s.position)
        },
        last_delivered: match s.last_delivered {
            Some((seq, at)) if l.en => format!("event {seq} ({})", when(at)),
            Some((seq, at)) => format!("第{seq}号（{}）", when(at)),
            None => l.t("まだありません", "none yet").to_string(),
        },
        last_attempt: match &s.last_attempt {
            Some(a) => format!("{}　{}", when(a.at), attempt_result(a, l).0),
            None => l.t("まだありません", "none yet").to_string(),
        },
        created: when(s.created_at),
    }
}

fn choices(l: Lang, chosen: &[&str]) -> Vec<TypeChoice> {
    events::known_types()
        .into_iter()
        .map(|t| TypeChoice {
            label: type_words(&t, l),
            checked: chosen.contains(&t.as_str()),
            code: t,
        })
        .collect()
}

fn ui_error(e: crate::service::ServiceError) -> UiError {
    // A type the page did not offer (the boxes carry the codes): said in
    // words, without echoing the code.
    if let crate::service::ServiceError::Invalid {
        code: "invalid_event_type",
        message_en,
        ..
    } = &e
    {
        let malformed = message_en.contains("malformed");
        return UiError {
            status: StatusCode::BAD_REQUEST,
            ja: if malformed {
                "送る種類の指定が正しい形式ではありません。画面を開き直して、一覧から選んでください。"
            } else {
                "送る種類に、存在しない種類が含まれています。画面を開き直して、一覧から選んでください。"
            }
            .into(),
            en: if malformed {
                "the event types sent are malformed; open the page again and tick them in the list"
            } else {
                "an event type sent does not exist; open the page again and tick them in the list"
            }
            .into(),
        };
    }
    let missing = matches!(
        e,
        crate::service::ServiceError::Invalid {
            code: "subscription_not_found",
            ..
        }
    );
    // The service names a subscription 購読; the page calls it 通知先.
    let mut u = UiError::from(e);
    if missing {
        u.status = StatusCode::NOT_FOUND;
    }
    u.ja = u.ja.replace("購読", "通知先");
    u
}

// ------------------------------------------------- POST-redirect-GET

/// The cookie carrying a new signing secret from the POST that made it to
/// the one page that shows it (POST-redirect-GET: a reload of that page
/// resends nothing and shows the secret no more). Sealed with the tenant's
/// key and bound to the subscription, the session (its CSRF token) and
/// the moment it was made; good for [`SECRET_COOKIE_SECONDS`], cleared by
/// the page that shows it. Any process of the tenant opens it (no state
/// kept in memory).
const SECRET_COOKIE: &str = "machi_hook_secret";
const SECRET_COOKIE_SECONDS: i64 = 300;
const SECRET_COOKIE_PATH: &str = "/ui/admin/subscriptions";

fn secret_context(id: i64, csrf: &str, at: i64) -> String {
    format!("webhook_secret_once/{id}/{csrf}/{at}")
}

/// The raw value of the secret cookie (longer than session cookies, so
/// not through the shared reader's length limit).
fn secret_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SECRET_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 1024)
}

/// A 303 to `to`, carrying `secret` (sealed) for the page there.
async fn redirect_with_secret(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    to: &str,
    secret: Option<(i64, String)>,
) -> Response {
    let mut res = Redirect::to(to).into_response();
    let Some((id, secret)) = secret else {
        return res;
    };
    let at = s.registry.clock().now().timestamp_micros();
    let (t, context) = (tenant.clone(), secret_context(id, &ctx.csrf, at));
    let sealed = s
        .registry
        .store()
        .read(Some(tenant), move |tx| {
            tx.tenant_keys(&t)?
                .seal(&context, secret.as_bytes())
                .map_err(crate::store::StoreError::from)
        })
        .await;
    match sealed {
        Ok(sealed) => {
            let c = format!(
                "{SECRET_COOKIE}={id}.{at}.{sealed}; Path={SECRET_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age={SECRET_COOKIE_SECONDS}{}",
                super::secure_attr()
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        // The subscription is made; only the showing failed: the page
        // says the secret was not kept, and a rotation makes a new one.
        Err(e) => tracing::warn!(error = %e, "webhook: cannot seal a new secret for its page"),
    }
    res
}

/// The secret the POST before left for this page (subscription `id`, or
/// any on the list: None), if it is this session's and fresh; and whether
/// a secret cookie came at all (then the answer clears it).
async fn take_secret(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    headers: &HeaderMap,
    id: Option<i64>,
) -> (Option<NewSecret>, bool) {
    let Some(raw) = secret_cookie(headers) else {
        return (None, false);
    };
    let mut parts = raw.splitn(3, '.');
    let (Some(sid), Some(at), Some(sealed)) = (parts.next(), parts.next(), parts.next()) else {
        return (None, true);
    };
    let (Ok(sid), Ok(at)) = (sid.parse::<i64>(), at.parse::<i64>()) else {
        return (None, true);
    };
    let now = s.registry.clock().now().timestamp_micros();
    let fresh = (0..=SECRET_COOKIE_SECONDS * 1_000_000).contains(&(now - at));
    if !fresh || id.is_some_and(|i| i != sid) {
        return (None, true);
    }
    let (t, context, sealed) = (
        tenant.clone(),
        secret_context(sid, &ctx.csrf, at),
        sealed.to_string(),
    );
    let opened = s
        .registry
        .store()
        .read(Some(tenant), move |tx| {
            let plain = tx
                .tenant_keys(&t)?
                .open(&context, &sealed)
                .map_err(crate::store::StoreError::from)?;
            Ok::<_, crate::store::StoreError>(String::from_utf8(plain.to_vec()).ok())
        })
        .await;
    match opened {
        Ok(Some(secret)) => (Some(NewSecret { id: sid, secret }), true),
        _ => (None, true),
    }
}

/// Clears the secret cookie on `res` (the page showed it, or it was stale).
fn clear_secret(mut res: Response, had: bool) -> Response {
    if had {
        let c = format!(
            "{SECRET_COOKIE}=; Path={SECRET_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0{}",
            super::secure_attr()
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// What the page after a redirect says was done (`?done=`).
#[derive(serde::Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
    id: Option<i64>,
    from: Option<i64>,
}

impl DoneQuery {
    /// The flash of `done` for subscription `id`; and whether the action
    /// made a secret (shown once: after that the page says so).
    fn flash(&self, l: Lang, id: Option<i64>) -> (String, bool) {
        let id = id.or(self.id).unwrap_or_default();
        let from = self.from.unwrap_or_default();
        let (ja, en, secret) = match self.done.as_deref() {
            Some("created") => (
                format!("通知先 {id} を登録しました。"),
                format!("Subscription {id} created."),
                true,
            ),
            Some("rotated") => (
                "署名の鍵を新しくしました。以前の鍵も24時間は署名に使われます。".into(),
                "New signing secret made; the previous one also signs for 24 hours.".into(),
                true,
            ),
            Some("paused") => ("一時停止しました。".into(), "Paused.".into(), false),
            Some("resumed") => (
                format!("第{from}号から再開しました。"),
                format!("Resumed from event {from}."),
                false,
            ),
            Some("replayed") => (
                format!("第{from}号から送り直します。"),
                format!("Replaying from event {from}."),
                false,
            ),
            Some("deleted") => (
                format!("通知先 {id} を削除しました（送信の記録は残ります）。"),
                format!("Subscription {id} deleted (its attempts stay on record)."),
                false,
            ),
            _ => return (String::new(), false),
        };
        (l.t(&ja, &en).to_string(), secret)
    }
}

/// The flash after a redirect, and the one-time secret if this answer
/// shows it; a secret action whose secret is not here any more (a
/// reload) says how to get a new one.
async fn after_redirect(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    headers: &HeaderMap,
    q: Result<Query<DoneQuery>, QueryRejection>,
    id: Option<i64>,
) -> (Result<(String, Option<NewSecret>), UiError>, bool) {
    let l = ctx.lang;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (flash, made_secret) = q.flash(l, id);
    let (secret, had) = take_secret(s, ctx, tenant, headers, id.or(q.id)).await;
    let flash = if made_secret && secret.is_none() {
        format!(
            "{flash}{}",
            l.t(
                "署名の鍵は一度だけ表示しました（再読み込みでは表示しません）。控えていない場合は「署名の鍵を新しくする」で作り直してください。",
                " The signing secret was shown once (not again on a reload); if it was not kept, rotate it to make a new one.",
            )
        )
    } else {
        flash
    };
    (Ok((flash, secret)), had)
}

async fn list_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    form: Option<&FormData>,
    result: Result<(String, Option<NewSecret>), UiError>,
) -> Response {
    let l = ctx.lang;
    let (summaries, clients) = match (
        s.registry.subscription_summaries(tenant).await,
        s.registry.subscribing_clients(tenant).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return ctx.error(&e.into()),
    };
    let empty = FormData::default();
    let f = form.unwrap_or(&empty);
    let (status, error, flash, secret) = match result {
        Ok((flash, secret)) => (StatusCode::OK, None, Some(flash), secret),
        Err(e) => (e.status, Some(l.t(&e.ja, &e.en).to_string()), None, None),
    };
    // After a success the form starts empty again.
    let keep = error.is_some();
    let page = ListPage {
        c: Chrome::new(ctx, "通知先（Webhook）の管理", "Webhook subscriptions").with_flash(flash),
        rows: summaries.iter().map(|x| sub_row(x, l)).collect(),
        clients: clients
            .into_iter()
            .map(|c| {
                let chosen = keep && f.is("client_id", &c.client_id);
                (c.client_id, c.system, chosen)
            })
            .collect(),
        choices: choices(l, &if keep { f.all("type") } else { Vec::new() }),
        url: if keep { f.text("url") } else { String::new() },
        from_start: keep && f.checked("from_start"),
        error,
        secret,
    };
    (status, html(&page)).into_response()
}

/// The tenant's subscriptions and the form to subscribe a client.
pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (result, had) = after_redirect(&s, &ctx, &tenant, &headers, q, None).await;
    clear_secret(list_page(&s, &ctx, &tenant, None, result).await, had)
}

/// Subscribes a client: callback URL, event types ticked by name (none:
/// every type), from now on or from the first event; the secret is shown
/// once on the answer.
pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let client = f.text("client_id");
    let result = if client.is_empty() {
        Err(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "通知を受ける連携先を選んでください。".into(),
            en: "choose the client that receives the events".into(),
        })
    } else if f.get("url").is_none() {
        Err(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "送り先の URL（https:// で始まるもの）を入力してください。".into(),
            en: "enter the callback URL (starting with https://)".into(),
        })
    } else {
        s.registry
            .create_subscription_for_client(
                &tenant,
                &client,
                NewSubscription {
                    url: f.text("url"),
                    types: f.all("type").into_iter().map(str::to_string).collect(),
                    after: f.checked("from_start").then_some(0),
                },
                &ctx.caller.actor(),
            )
            .await
            .map_err(ui_error)
    };
    match result {
        // POST-redirect-GET: the list shows the secret once.
        Ok(v) => {
            let id = v.subscription_id;
            redirect_with_secret(
                &s,
                &ctx,
                &tenant,
                &format!("/ui/admin/subscriptions?done=created&id={id}"),
                v.secret.map(|secret| (id, secret)),
            )
            .await
        }
        Err(e) => list_page(&s, &ctx, &tenant, Some(&f), Err(e)).await,
    }
}

fn parse_id(raw: &str) -> Result<i64, UiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| UiError {
            status: StatusCode::NOT_FOUND,
            ja: "その通知先はありません。".into(),
            en: "no such subscription".into(),
        })
}

async fn detail_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    id: i64,
    result: Result<(String, Option<NewSecret>), UiError>,
) -> Response {
    let l = ctx.lang;
    let (summary, attempts, points) = match s.registry.subscription_for_admin(tenant, id, 50).await
    {
        Ok(x) => x,
        Err(e) => return ctx.error(&ui_error(e)),
    };
    let (status, error, flash, secret) = match result {
        Ok((flash, secret)) => (StatusCode::OK, None, Some(flash), secret),
        Err(e) => (e.status, Some(l.t(&e.ja, &e.en).to_string()), None, None),
    };
    let point_words = |p: &ReplayPoint| {
        let kind = type_words(&p.kind, l);
        let done = p.seq <= summary.position;
        match (l.en, done) {
            (true, true) => format!(
                "event {} — {kind} ({}) — delivered",
                p.seq,
                when(p.created_at)
            ),
            (true, false) => format!("event {} — {kind} ({})", p.seq, when(p.created_at)),
            (false, true) => format!("第{}号 — {kind}（{}）— 処理済み", p.seq, when(p.created_at)),
            (false, false) => format!("第{}号 — {kind}（{}）", p.seq, when(p.created_at)),
        }
    };
    let title_ja = format!("通知先 {id}");
    let title_en = format!("Subscription {id}");
    let page = DetailPage {
        c: Chrome::new(ctx, &title_ja, &title_en).with_flash(flash),
        s: sub_row(&summary, l),
        attempts: attempts.iter().map(|a| attempt_row(a, l)).collect(),
        points: points.iter().map(|p| (p.seq, point_words(p))).collect(),
        next_seq: summary.position + 1,
        error,
        secret,
    };
    (status, html(&page)).into_response()
}

/// One subscription: its state, recent attempts and what can be done.
pub async fn detail(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match parse_id(&raw) {
        Ok(id) => {
            let (result, had) = after_redirect(&s, &ctx, &tenant, &headers, q, Some(id)).await;
            clear_secret(detail_page(&s, &ctx, &tenant, id, result).await, had)
        }
        Err(e) => ctx.error(&e),
    }
}

/// Rotates the secret, pauses, resumes, replays from a chosen event, or
/// ends a subscription (`action`).
pub async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return ctx.error(&e),
    };
    let actor = ctx.caller.actor();
    let r = &s.registry;
    let to = |done: &str| format!("/ui/admin/subscriptions/{id}?done={done}");
    // Each success is answered by a redirect to the page (POST-redirect-
    // GET: a reload resends nothing); a refusal shows the page with the
    // error, nothing changed.
    let result: Result<(String, Option<(i64, String)>), UiError> = match f.v("action") {
        "rotate" => r
            .rotate_subscription_secret(&tenant, None, id, &actor)
            .await
            .map(|v| (to("rotated"), v.secret.map(|secret| (id, secret))))
            .map_err(ui_error),
        "pause" => r
            .pause_subscription(&tenant, None, id, &actor)
            .await
            .map(|_| (to("paused"), None))
            .map_err(ui_error),
        "resume" => r
            .resume_subscription(&tenant, None, id, &actor)
            .await
            .map(|v| (format!("{}&from={}", to("resumed"), v.position + 1), None))
            .map_err(ui_error),
        "replay" => {
            // A number typed in wins over the list's choice.
            let typed = machi_domain::input::compact_number(f.v("from_number"));
            let raw = if typed.is_empty() {
                f.text("from")
            } else {
                typed
            };
            match raw.parse::<i64>() {
                Ok(from) => r
                    .replay_subscription(&tenant, None, id, from, &actor)
                    .await
                    .map(|_| (format!("{}&from={from}", to("replayed")), None))
                    .map_err(ui_error),
                Err(_) => Err(UiError {
                    status: StatusCode::BAD_REQUEST,
                    ja: "再送を始める連携イベントを選ぶか、その番号を数字で入力してください。"
                        .into(),
                    en: "choose the event to replay from, or enter its number".into(),
                }),
            }
        }
        "delete" => {
            if !f.checked("confirm_delete") {
                Err(UiError {
                    status: StatusCode::BAD_REQUEST,
                    ja: "削除するには「削除してよい」に印を付けてください。".into(),
                    en: "tick \"yes, delete\" to delete".into(),
                })
            } else {
                r.delete_subscription(&tenant, None, id, &actor)
                    .await
                    .map(|()| {
                        (
                            format!("/ui/admin/subscriptions?done=deleted&id={id}"),
                            None,
                        )
                    })
                    .map_err(ui_error)
            }
        }
        _ => Err(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "操作を選んでください。".into(),
            en: "choose an action".into(),
        }),
    };
    match result {
        Ok((to, secret)) => redirect_with_secret(&s, &ctx, &tenant, &to, secret).await,
        Err(e) => detail_page(&s, &ctx, &tenant, id, Err(e)).await,
    }
}

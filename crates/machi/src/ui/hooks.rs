//! Webhook subscriptions (通知先) for the tenant administrator: every
//! client's subscriptions with their state in words, what was last
//! delivered and the last attempt in 和暦, the recent attempts; subscribing
//! a client (event types chosen by name, the secret shown once), rotating
//! the secret, pausing, resuming (from the first event not yet delivered)
//! and replaying from a chosen event. Every action is in the access log
//! (`webhook.*`), as the API's are.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
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

/// The cookie carrying what the POST before did (the message, "flash")
/// and, after a subscription or a rotation, the new signing secret, to
/// the one page that shows it (POST-redirect-GET: a reload of that page
/// resends nothing and shows neither again). The flash is never read from
/// the URL: a stale or forged link shows no success message. Sealed with
/// the tenant's key and bound to the session (its CSRF token), the moment
/// it was made and a random one-time key; good for
/// [`ONCE_COOKIE_SECONDS`], and shown once only: the page that shows it
/// records its key as used ([`ONCE_KEY_SPACE`]) and clears the cookie, so
/// the same cookie sent again (a reload before the browser dropped it, a
/// copy) shows nothing. Any process of the tenant opens it and sees the
/// key used (the record is in the database, not in memory).
const ONCE_COOKIE: &str = "machi_hook_once";
const ONCE_COOKIE_SECONDS: i64 = 300;
const ONCE_COOKIE_PATH: &str = "/ui/admin/subscriptions";
/// The name under which the used one-time keys are kept (beside client
/// assertion ids, which never take this form: a client id has no `:`).
const ONCE_KEY_SPACE: &str = "ui:webhook_once";

fn once_context(csrf: &str, at: i64, key: &str) -> String {
    format!("webhook_once/{csrf}/{at}/{key}")
}

/// What was done, as the page after the redirect says it. Its `Debug`
/// leaves the secret out (never in a log line).
#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
pub struct Done {
    /// `created`, `rotated`, `paused`, `already_stopped`, `resumed`, `already_active`,
    /// `replayed`, `deleted`.
    done: String,
    /// The subscription.
    id: i64,
    /// The event delivery restarts from (resume, replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<i64>,
    /// The new signing secret (created, rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Done")
            .field("done", &self.done)
            .field("id", &self.id)
            .field("from", &self.from)
            .field("secret", &self.secret.as_ref().map(|_| "(withheld)"))
            .finish()
    }
}

impl Done {
    fn new(done: &str, id: i64) -> Done {
        Done {
            done: done.into(),
            id,
            from: None,
            secret: None,
        }
    }
    fn from(mut self, from: i64) -> Done {
        self.from = Some(from);
        self
    }

    /// The message in the page's language.
    fn flash(&self, l: Lang) -> String {
        let (id, from) = (self.id, self.from.unwrap_or_default());
        let (ja, en): (String, String) = match self.done.as_str() {
            "created" => (
                format!("通知先 {id} を登録しました。"),
                format!("Subscription {id} created."),
            ),
            "rotated" => (
                "署名の鍵を新しくしました。以前の鍵も24時間は署名に使われます。".into(),
                "New signing secret made; the previous one also signs for 24 hours.".into(),
            ),
            "paused" => ("一時停止しました。".into(), "Paused.".into()),
            "resumed" => (
                format!("第{from}号から再開しました。"),
                format!("Resumed from event {from}."),
            ),
            "already_stopped" => (
                "既に停止しています（配信していません）。".into(),
                "Already stopped: nothing is being delivered.".into(),
            ),
            "already_active" => (
                "既に再開されています（正常に配信中です）。".into(),
                "Already active: it is delivering normally.".into(),
            ),
            "replayed" => (
                format!("第{from}号から送り直します。"),
                format!("Replaying from event {from}."),
            ),
            "deleted" => (
                format!("通知先 {id} を削除しました（送信の記録は残ります）。"),
                format!("Subscription {id} deleted (its attempts stay on record)."),
            ),
            _ => return String::new(),
        };
        l.t(&ja, &en).to_string()
    }
}

/// The raw value of the one-time cookie (longer than session cookies, so
/// not through the shared reader's length limit).
fn once_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == ONCE_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 2048)
}

/// A 303 to `to`, carrying `done` (sealed) for the page there.
async fn redirect_with(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    to: &str,
    done: Done,
) -> Response {
    let mut res = Redirect::to(to).into_response();
    let at = s.registry.clock().now().timestamp_micros();
    let mut key = [0u8; 16];
    if getrandom::fill(&mut key).is_err() {
        return res;
    }
    let key = hex::encode(key);
    let (t, context) = (tenant.clone(), once_context(&ctx.csrf, at, &key));
    let Ok(plain) = serde_json::to_vec(&done) else {
        return res;
    };
    let sealed = s
        .registry
        .store()
        .read(Some(tenant), move |tx| {
            tx.tenant_keys(&t)?
                .seal(&context, &plain)
                .map_err(crate::store::StoreError::from)
        })
        .await;
    match sealed {
        Ok(sealed) => {
            let c = format!(
                "{ONCE_COOKIE}={at}.{key}.{sealed}; Path={ONCE_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age={ONCE_COOKIE_SECONDS}{}",
                super::secure_attr()
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        // The action is done; only the showing failed: the page shows the
        // state as it is, and a rotation makes a new secret.
        Err(e) => tracing::warn!(error = %e, "webhook: cannot seal the message for its page"),
    }
    res
}

/// A one-time cookie opened for this page, not yet used: what was done,
/// its key and until when the key must be remembered as used.
struct Opened {
    done: Done,
    key: String,
    expires: i64,
}

/// What the POST before left for this page (subscription `id`, or the
/// list: None), if it is this session's, fresh and not shown before; and
/// whether a one-time cookie came at all (then the answer clears it,
/// unless it is left for a page still to show it). Nothing is recorded
/// here: [`show_once`] records the key as used once the page is made.
async fn open_done(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    headers: &HeaderMap,
    id: Option<i64>,
) -> (Option<Opened>, bool) {
    let Some(raw) = once_cookie(headers) else {
        return (None, false);
    };
    let mut parts = raw.splitn(3, '.');
    let (Some(at), Some(key), Some(sealed)) = (parts.next(), parts.next(), parts.next()) else {
        return (None, true);
    };
    let Ok(at) = at.parse::<i64>() else {
        return (None, true);
    };
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (None, true);
    }
    let now = s.registry.clock().now().timestamp_micros();
    let fresh = (0..=ONCE_COOKIE_SECONDS * 1_000_000).contains(&(now - at));
    if !fresh {
        return (None, true);
    }
    let (t, context, sealed) = (
        tenant.clone(),
        once_context(&ctx.csrf, at, key),
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
            Ok::<_, crate::store::StoreError>(serde_json::from_slice::<Done>(&plain).ok())
        })
        .await;
    let Ok(Some(done)) = opened else {
        return (None, true);
    };
    // The list shows what was done to any subscription; a subscription's
    // page only what was done to it.
    if id.is_some_and(|i| i != done.id) {
        return (None, true);
    }
    let o = Opened {
        done,
        key: key.to_string(),
        expires: at + ONCE_COOKIE_SECONDS * 1_000_000,
    };
    (Some(o), true)
}

/// Records the key of `o` as used: Ok(true) for the first answer to do
/// so (the one that shows it), Ok(false) if one did before.
async fn use_once(
    s: &AppState,
    tenant: &MunicipalityCode,
    o: &Opened,
) -> Result<bool, crate::store::StoreError> {
    let used = format!("{ONCE_KEY_SPACE}:{tenant}");
    let (key, expires) = (o.key.clone(), o.expires);
    let now = s.registry.clock().now().timestamp_micros();
    s.registry
        .store()
        .write(None, move |tx| {
            crate::store::accounts::use_assertion_id(tx, &used, &key, expires, now)
        })
        .await
}

/// Clears the one-time cookie on `res` (the page showed it, or it was
/// stale or used).
fn clear_once(mut res: Response, had: bool) -> Response {
    if had {
        let c = format!(
            "{ONCE_COOKIE}=; Path={ONCE_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0{}",
            super::secure_attr()
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// The flash and the one-time secret of what was done, in `l`.
fn shown(done: &Done, l: Lang) -> (String, Option<NewSecret>) {
    let secret = done.secret.clone().map(|secret| NewSecret {
        id: done.id,
        secret,
    });
    (done.flash(l), secret)
}

type Shown = Result<(String, Option<NewSecret>), UiError>;

/// A page (`render`: the list, or subscription `id`'s page) with what the
/// POST before left for it, shown once. The key is recorded as used only
/// after the page was made with it and only for a page that is answered
/// whole: a HEAD request (no body: nothing would be shown) neither uses
/// nor clears the cookie, and neither does a page that failed (an error
/// reading the subscriptions: the same cookie shows the secret on the
/// next try within its five minutes). If another answer used the key
/// meanwhile (two tabs at once), the page is made again without it.
/// Should the key not be recordable, the page shows nothing of it and
/// keeps the cookie for a later try.
async fn show_once<F, Fut>(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    method: &Method,
    headers: &HeaderMap,
    id: Option<i64>,
    render: F,
) -> Response
where
    F: Fn(Shown) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let nothing = || Ok((String::new(), None));
    if *method == Method::HEAD {
        return render(nothing()).await;
    }
    let (opened, had) = open_done(s, ctx, tenant, headers, id).await;
    let Some(o) = opened else {
        return clear_once(render(nothing()).await, had);
    };
    let res = render(Ok(shown(&o.done, ctx.lang))).await;
    if res.status() != StatusCode::OK {
        return res;
    }
    match use_once(s, tenant, &o).await {
        Ok(true) => clear_once(res, true),
        Ok(false) => clear_once(render(nothing()).await, true),
        Err(e) => {
            tracing::warn!(error = %e, "webhook: cannot record a message as shown");
            render(nothing()).await
        }
    }
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
pub async fn list(State(s): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    show_once(&s, &ctx, &tenant, &method, &headers, None, |r| {
        list_page(&s, &ctx, &tenant, None, r)
    })
    .await
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
            let mut done = Done::new("created", v.subscription_id);
            done.secret = v.secret;
            redirect_with(&s, &ctx, &tenant, "/ui/admin/subscriptions", done).await
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
    method: Method,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match parse_id(&raw) {
        Ok(id) => {
            show_once(&s, &ctx, &tenant, &method, &headers, Some(id), |r| {
                detail_page(&s, &ctx, &tenant, id, r)
            })
            .await
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
    let to = format!("/ui/admin/subscriptions/{id}");
    // Each success is answered by a redirect to the page (POST-redirect-
    // GET: a reload resends nothing), the message travelling in the
    // one-time cookie; a refusal shows the page with the error, nothing
    // changed.
    let result: Result<(String, Done), UiError> = match f.v("action") {
        "rotate" => r
            .rotate_subscription_secret(&tenant, None, id, &actor)
            .await
            .map(|v| {
                let mut done = Done::new("rotated", id);
                done.secret = v.secret;
                (to.clone(), done)
            })
            .map_err(ui_error),
        "pause" => match r.pause_subscription(&tenant, None, id, &actor).await {
            Ok(_) => Ok((to.clone(), Done::new("paused", id))),
            // A double click, or a second administrator: it is stopped
            // already, which is what was asked; said calmly, no error.
            Err(crate::service::ServiceError::Invalid {
                code: "subscription_not_active",
                ..
            }) => Ok((to.clone(), Done::new("already_stopped", id))),
            Err(e) => Err(ui_error(e)),
        },
        "resume" => match r.resume_subscription(&tenant, None, id, &actor).await {
            Ok(v) => Ok((to.clone(), Done::new("resumed", id).from(v.position + 1))),
            // A double click, or a second administrator: it is running
            // already, which is what was asked; said calmly, no error.
            Err(crate::service::ServiceError::Invalid {
                code: "subscription_not_paused",
                ..
            }) => Ok((to.clone(), Done::new("already_active", id))),
            Err(e) => Err(ui_error(e)),
        },
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
                    .map(|_| (to.clone(), Done::new("replayed", id).from(from)))
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
                            "/ui/admin/subscriptions".to_string(),
                            Done::new("deleted", id),
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
        Ok((to, done)) => redirect_with(&s, &ctx, &tenant, &to, done).await,
        Err(e) => detail_page(&s, &ctx, &tenant, id, Err(e)).await,
    }
}

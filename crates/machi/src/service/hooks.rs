//! Webhooks: every event pushed to the systems that subscribe, in order,
//! signed per Standard Webhooks 1.0, retried with backoff for more than 72
//! hours, never skipped.
//!
//! Guarantees: at-least-once delivery of every event matching a
//! subscription's filter, in sequence order per subscription (one request in
//! flight per subscription); the `webhook-id` (= the CloudEvent `id`) is the
//! same on every retry and replay, so a receiver applies each event once.
//! A subscription whose receiver fails for more than 72 hours is paused
//! (its position kept: resuming delivers from the event that failed) and
//! shown on the tenant administrator's page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use machi_domain::ids::MunicipalityCode;
use sha2::Sha256;

use super::events::{self, CloudEvent};
use super::{Actor, Clock, Registry, ServiceError};
use crate::store::hooks::{self as store, Attempt, Settle, Subscription};
use crate::store::records::{self, AuditEntry};
use crate::store::{StoreError, Tx};

/// Retry delays after the 1st, 2nd, … failure (Standard Webhooks' schedule):
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (75 h 35 min in
/// all), then every 24 h until [`PAUSE_AFTER`] has passed.
pub const RETRY_SCHEDULE: [u64; 9] = [
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];
/// A subscription failing for this long (and through the whole schedule)
/// is paused.
pub const PAUSE_AFTER: Duration = Duration::from_secs(72 * 3600);
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Subscriptions one client may hold.
pub const MAX_SUBSCRIPTIONS: usize = 20;

/// Which callback URLs are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookPolicy {
    /// `http://127.0.0.1`, `http://[::1]` and `http://localhost` allowed
    /// (`MACHI_WEBHOOK_ALLOW_INSECURE_LOCAL=1`: tests and the demo).
    pub allow_insecure_local: bool,
    /// Callbacks at private, loopback or link-local addresses allowed
    /// (`MACHI_WEBHOOK_ALLOW_PRIVATE=1`: receivers inside the LGWAN segment).
    pub allow_private: bool,
    /// A callback's host name must resolve when the subscription is made
    /// (on in `machi serve`; off in tests, which have no DNS). Whether or
    /// not it is required, a name that resolves to a private, loopback or
    /// link-local address is refused unless `allow_private`.
    pub require_resolvable: bool,
}

impl HookPolicy {
    pub fn from_env() -> Self {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| v == "1" || v == "true");
        HookPolicy {
            allow_insecure_local: on("MACHI_WEBHOOK_ALLOW_INSECURE_LOCAL"),
            allow_private: on("MACHI_WEBHOOK_ALLOW_PRIVATE"),
            require_resolvable: true,
        }
    }
}

fn invalid(field: &str, code: &'static str, ja: String, en: String) -> ServiceError {
    ServiceError::Invalid {
        field: field.into(),
        code,
        message_ja: ja,
        message_en: en,
    }
}

fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.octets()[0] == 100 && (64..128).contains(&v.octets()[1])
        }
        std::net::IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
                || v.to_ipv4_mapped().is_some_and(|m| is_private(m.into()))
        }
    }
}

/// Checks a callback URL: HTTPS (plain HTTP only to the local machine when
/// the policy allows it), no credentials in it, not at a private address
/// unless allowed.
pub fn check_callback(url: &str, policy: HookPolicy) -> Result<reqwest::Url, ServiceError> {
    let shown: String = url.chars().take(200).collect();
    let bad = |ja: &str, en: &str| {
        invalid(
            "url",
            "invalid_callback_url",
            format!("コールバック URL「{shown}」は使えません: {ja}"),
            format!("callback URL \"{shown}\" is not accepted: {en}"),
        )
    };
    if url.len() > 2000 {
        return Err(bad("長すぎます。", "too long"));
    }
    let u = reqwest::Url::parse(url.trim())
        .map_err(|_| bad("URL の形式ではありません。", "not a URL"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "URL に利用者名やパスワードを含めないでください。",
            "it must not contain credentials",
        ));
    }
    let host = u
        .host()
        .ok_or_else(|| bad("ホスト名がありません。", "no host"))?;
    let ip: Option<std::net::IpAddr> = match host {
        url::Host::Ipv4(v) => Some(v.into()),
        url::Host::Ipv6(v) => Some(v.into()),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            Some(std::net::Ipv4Addr::LOCALHOST.into())
        }
        url::Host::Domain(_) => None,
    };
    let local = ip.is_some_and(|i| i.is_loopback());
    match u.scheme() {
        "https" => {}
        "http" if local && policy.allow_insecure_local => {}
        "http" => {
            return Err(bad(
                "HTTPS の URL を指定してください。",
                "it must use HTTPS",
            ));
        }
        _ => {
            return Err(bad(
                "HTTPS の URL を指定してください。",
                "it must use HTTPS",
            ));
        }
    }
    if let Some(i) = ip
        && is_private(i)
        && !policy.allow_private
        && !(local && policy.allow_insecure_local)
    {
        return Err(bad(
            "内部ネットワークのアドレスは許可されていません。",
            "it points at a private or loopback address",
        ));
    }
    Ok(u)
}

/// Resolves a checked callback URL's host name (not for IP literals) and
/// refuses it if any address it names is private, loopback or link-local
/// (unless allowed), or, when the policy requires it, if it does not
/// resolve. The worker checks again at each delivery
/// ([`PublicOnlyResolver`]): a name may be pointed elsewhere later.
pub async fn check_resolved(u: &reqwest::Url, policy: HookPolicy) -> Result<(), ServiceError> {
    let Some(url::Host::Domain(name)) = u.host() else {
        return Ok(());
    };
    if name.eq_ignore_ascii_case("localhost") {
        // Judged as loopback by check_callback already.
        return Ok(());
    }
    let shown: String = u.as_str().chars().take(200).collect();
    let port = u.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((name.to_string(), port)),
    )
    .await;
    let addrs: Vec<std::net::SocketAddr> = match lookup {
        Ok(Ok(a)) => a.collect(),
        _ => Vec::new(),
    };
    if addrs.is_empty() {
        if policy.require_resolvable {
            return Err(invalid(
                "url",
                "callback_unreachable",
                format!(
                    "コールバック URL「{shown}」のホスト名「{name}」を名前解決できません（到達できません）。"
                ),
                format!(
                    "callback URL \"{shown}\" is unreachable: its host name {name:?} does not resolve"
                ),
            ));
        }
        return Ok(());
    }
    if !policy.allow_private
        && let Some(a) = addrs.iter().find(|a| is_private(a.ip()))
    {
        return Err(invalid(
            "url",
            "callback_private_address",
            format!(
                "コールバック URL「{shown}」のホスト名「{name}」は内部ネットワークのアドレス（{}）を指しています。許可されていません。",
                a.ip()
            ),
            format!(
                "callback URL \"{shown}\" is not accepted: its host name {name:?} resolves to a private, loopback or link-local address ({})",
                a.ip()
            ),
        ));
    }
    Ok(())
}

/// The worker's DNS: a host name's private, loopback and link-local
/// addresses are dropped unless the policy allows them, so a callback name
/// re-pointed inside the network after it was accepted reaches nothing
/// there (IP literals never come here: they were judged when accepted).
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver(pub HookPolicy);

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let local_name = host.eq_ignore_ascii_case("localhost");
            let kept: Vec<std::net::SocketAddr> = all
                .into_iter()
                .filter(|a| {
                    policy.allow_private
                        || !is_private(a.ip())
                        || (local_name && policy.allow_insecure_local && a.ip().is_loopback())
                })
                .collect();
            if kept.is_empty() {
                return Err(
                    format!("{host} {PRIVATE_ONLY} (private addresses are not called)").into(),
                );
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> Result<String, ServiceError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| StoreError::Task(format!("random: {e}")))?;
    Ok(format!("whsec_{}", B64.encode(key)))
}

/// The Standard Webhooks signature of one message with one secret:
/// `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, ServiceError> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| StoreError::Corrupt(format!("webhook secret: {e}")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| StoreError::Corrupt(format!("webhook secret: {e}")))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// A subscription as its client sees it (never the secret).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub subscription_id: i64,
    pub client_id: String,
    pub url: String,
    /// Event types delivered (empty: every type).
    pub types: Vec<String>,
    /// `active`, `paused` (failing for more than 72 hours) or `disabled`
    /// (the receiver answered 410 Gone).
    pub status: String,
    /// The last event sequence delivered or filtered out.
    pub position: i64,
    /// Failed attempts of the next event so far.
    pub failed_attempts: i64,
    /// The next attempt (RFC 3339), when retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// Why it is not delivering, when `status` is not `active`:
    /// `receiver_failing` (the worker paused it after its receiver failed
    /// for more than 72 hours), `paused_by_request` (paused through the API
    /// by the client, or by the tenant administrator on the 通知先 page) or
    /// `receiver_gone` (the receiver answered 410 Gone). Resume or replay
    /// starts it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "paused_by_request")]
    pub pause_reason: Option<String>,
    /// When it was paused or disabled (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// The signing secret: only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&super::clock::jst()).to_rfc3339())
        .unwrap_or_default()
}

impl SubscriptionView {
    fn of(s: &Subscription, secret: Option<String>) -> Self {
        SubscriptionView {
            subscription_id: s.subscription_id,
            client_id: s.client_id.clone(),
            url: s.url.clone(),
            types: s.types.clone(),
            status: s.status.clone(),
            position: s.position,
            failed_attempts: s.attempt,
            next_attempt_at: (s.attempt > 0).then(|| rfc3339(s.next_attempt_at)),
            failing_since: s.failing_since.map(rfc3339),
            pause_reason: PauseReason::of(s).map(|r| r.code().to_string()),
            paused_at: (s.status != "active")
                .then_some(s.paused_at)
                .flatten()
                .map(rfc3339),
            secret,
        }
    }
}

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: String,
    pub types: Vec<String>,
    /// Start after this sequence (default: the current last event, so
    /// only new events are pushed; 0 replays everything).
    pub after: Option<i64>,
}

/// A subscription needing attention, for the administrator's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAlert {
    pub subscription_id: i64,
    pub client_id: String,
    pub url: String,
    pub status: String,
    pub failing_since: Option<i64>,
    pub failed_attempts: i64,
}

fn seal_context(id: i64) -> String {
    format!("webhook_subscriptions/{id}")
}

fn log(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    actor: &Actor,
    function: &str,
    id: i64,
    at: i64,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    records::append_next_audit(
        tx,
        tenant,
        at,
        &AuditEntry {
            operator: actor.operator.clone(),
            terminal: actor.terminal.clone(),
            function: function.into(),
            target: format!("webhook_subscriptions/{id}"),
            detail: detail.to_string(),
            my_number_shown: false,
        },
    )?;
    Ok(())
}

impl Registry {
    /// Creates a subscription of `client_id`; the answer holds the secret.
    pub async fn create_subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        req: NewSubscription,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let checked = check_callback(&req.url, self.hook_policy())?;
        check_resolved(&checked, self.hook_policy()).await?;
        let url = checked.to_string();
        let types = events::parse_type_filter("types", req.types.iter().map(String::as_str))?;
        if req.after.is_some_and(|a| a < 0) {
            return Err(invalid(
                "after",
                "invalid_after",
                "after は 0 以上の整数で指定してください。".into(),
                "after must be an integer of 0 or more".into(),
            ));
        }
        let secret = new_secret()?;
        let now = self.clock().now().timestamp_micros();
        let (t, client, actor, shown) = (
            tenant.clone(),
            client_id.to_string(),
            actor.clone(),
            secret.clone(),
        );
        let s = self
            .store()
            .write(Some(tenant), move |tx| {
                if !records::lock_tenant(tx, &t)? {
                    return Err(ServiceError::TenantNotFound(t.to_string()));
                }
                if store::list(tx, &t, Some(&client))?.len() >= MAX_SUBSCRIPTIONS {
                    return Err(invalid(
                        "url",
                        "too_many_subscriptions",
                        format!("1つのクライアントの購読は {MAX_SUBSCRIPTIONS} 件までです。"),
                        format!("a client may hold at most {MAX_SUBSCRIPTIONS} subscriptions"),
                    ));
                }
                let id = store::next_subscription_id(tx, &t)?;
                let sealed = tx
                    .tenant_keys(&t)?
                    .seal(&seal_context(id), secret.as_bytes())
                    .map_err(StoreError::from)?;
                // Zero loss: a start past the latest event would skip every
                // event up to it, so it is refused like a replay from an
                // event that does not exist yet.
                let last = records::last_event_seq(tx, &t)?;
                let position = match req.after {
                    Some(a) if a > last => return Err(after_too_far(a, last)),
                    Some(a) => a,
                    None => last,
                };
                let s = Subscription {
                    tenant: t.clone(),
                    subscription_id: id,
                    client_id: client,
                    url,
                    types,
                    secret: sealed,
                    previous_secret: None,
                    previous_until: None,
                    status: "active".into(),
                    position,
                    attempt: 0,
                    next_attempt_at: now,
                    failing_since: None,
                    paused_at: None,
                    created_at: now,
                };
                store::insert(tx, &s)?;
                let detail = serde_json::json!({ "subscription_id": id, "client_id": s.client_id });
                log(tx, &t, &actor, "webhook.subscribe", id, now, detail)?;
                Ok(s)
            })
            .await?;
        Ok(SubscriptionView::of(&s, Some(shown)))
    }

    /// The subscriptions of `client_id` (all of the tenant's when None).
    pub async fn subscriptions(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
    ) -> Result<Vec<SubscriptionView>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, c) = (tenant.clone(), client_id.map(str::to_string));
        let list = self
            .store()
            .read(Some(tenant), move |tx| store::list(tx, &t, c.as_deref()))
            .await?;
        Ok(list.iter().map(|s| SubscriptionView::of(s, None)).collect())
    }

    /// One subscription of `client_id`, with its latest attempts.
    pub async fn subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
    ) -> Result<(SubscriptionView, Vec<Attempt>), ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, c) = (tenant.clone(), client_id.map(str::to_string));
        self.store()
            .read(Some(tenant), move |tx| {
                let s = store::get(tx, &t, id)?
                    .filter(|s| c.as_deref().is_none_or(|c| c == s.client_id))
                    .ok_or_else(|| not_found(id))?;
                let a = store::attempts(tx, &t, id, 100)?;
                Ok((SubscriptionView::of(&s, None), a))
            })
            .await
    }

    /// Changes a subscription of `client_id` (of any client of the tenant
    /// when None: the tenant administrator) in one logged transaction.
    async fn subscription_write<T, F>(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        // The access log's function, and what its detail adds.
        (function, extra): (&'static str, serde_json::Value),
        actor: &Actor,
        f: F,
    ) -> Result<T, ServiceError>
    where
        F: FnOnce(&mut Tx<'_>, &Subscription, i64) -> Result<T, ServiceError> + Send + 'static,
        T: Send + 'static,
    {
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, c, actor) = (tenant.clone(), client_id.map(str::to_string), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                let s = store::get(tx, &t, id)?
                    .filter(|s| c.as_deref().is_none_or(|c| c == s.client_id))
                    .ok_or_else(|| not_found(id))?;
                let out = f(tx, &s, now)?;
                let mut detail =
                    serde_json::json!({ "subscription_id": id, "client_id": s.client_id });
                if let (Some(d), serde_json::Value::Object(more)) = (detail.as_object_mut(), extra)
                {
                    d.extend(more);
                }
                log(tx, &t, &actor, function, id, now, detail)?;
                Ok(out)
            })
            .await
    }

    /// Ends a subscription of `client_id` (any of the tenant's when None:
    /// the tenant administrator); its attempts stay on record.
    pub async fn delete_subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        let t = tenant.clone();
        self.subscription_write(
            tenant,
            client_id,
            id,
            ("webhook.unsubscribe", serde_json::Value::Null),
            actor,
            move |tx, _, _| {
                store::delete(tx, &t, id)?;
                Ok(())
            },
        )
        .await?;
        forget_series(tenant, id);
        Ok(())
    }

    /// Pauses an active subscription by hand (its client through the API,
    /// or the tenant administrator: `client_id` None): nothing is sent
    /// until it is resumed, its position is kept. Its failure count is
    /// cleared, so a paused subscription without `failing_since` is one a
    /// person paused ([`PauseReason::ByRequest`]); the worker's own pause
    /// keeps it.
    pub async fn pause_subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        let t = tenant.clone();
        self.subscription_write(
            tenant,
            client_id,
            id,
            ("webhook.pause", serde_json::Value::Null),
            actor,
            move |tx, s, now| {
                if s.status != "active" {
                    return Err(invalid(
                        "subscription_id",
                        "subscription_not_active",
                        format!("購読 {id} は配信中ではないため、一時停止できません（すでに停止しています）。"),
                        format!("subscription {id} is not active, so it cannot be paused (it is stopped already)"),
                    ));
                }
                store::pause(tx, &t, id, now)?;
                let s = store::get(tx, &t, id)?.ok_or_else(|| not_found(id))?;
                Ok(SubscriptionView::of(&s, None))
            },
        )
        .await
    }

    /// Resumes a paused or disabled subscription, or retries a failing one
    /// now: delivery restarts at the first event not yet delivered
    /// (`position + 1`), in order; nothing is skipped.
    pub async fn resume_subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        let t = tenant.clone();
        self.subscription_write(
            tenant,
            client_id,
            id,
            ("webhook.resume", serde_json::Value::Null),
            actor,
            move |tx, s, now| {
                if s.status == "active" && s.attempt == 0 {
                    return Err(invalid(
                        "subscription_id",
                        "subscription_not_paused",
                        format!("購読 {id} は正常に配信中です。再開するものはありません。"),
                        format!(
                            "subscription {id} is delivering normally; there is nothing to resume"
                        ),
                    ));
                }
                store::restart_at(tx, &t, id, s.position, now)?;
                let s = store::get(tx, &t, id)?.ok_or_else(|| not_found(id))?;
                Ok(SubscriptionView::of(&s, None))
            },
        )
        .await
    }

    /// Replay: delivers again every matching event from sequence `from` on
    /// (and resumes a paused or disabled subscription).
    pub async fn replay_subscription(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        from: i64,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        if from < 1 {
            return Err(invalid(
                "from",
                "invalid_from",
                "再送を始める連携イベントの番号（from）は 1 以上の整数で指定してください。".into(),
                "from (the event sequence to replay from) must be an integer of 1 or more".into(),
            ));
        }
        let t = tenant.clone();
        self.subscription_write(
            tenant,
            client_id,
            id,
            ("webhook.replay", serde_json::json!({ "replay_from": from })),
            actor,
            move |tx, _, now| {
                let last = records::last_event_seq(tx, &t)?;
                if from > last + 1 {
                    return Err(invalid(
                        "from",
                        "invalid_from",
                        format!(
                            "第{from}号の連携イベントはまだありません（最新は第{last}号です）。"
                        ),
                        format!("there is no event {from} yet (the latest is {last})"),
                    ));
                }
                store::restart_at(tx, &t, id, from - 1, now)?;
                let s = store::get(tx, &t, id)?.ok_or_else(|| not_found(id))?;
                Ok(SubscriptionView::of(&s, None))
            },
        )
        .await
    }

    /// A new secret; the previous one keeps signing (a second signature)
    /// for [`ROTATION_OVERLAP`].
    pub async fn rotate_subscription_secret(
        &self,
        tenant: &MunicipalityCode,
        client_id: Option<&str>,
        id: i64,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        let secret = new_secret()?;
        let shown = secret.clone();
        let t = tenant.clone();
        let view = self
            .subscription_write(
                tenant,
                client_id,
                id,
                ("webhook.rotate_secret", serde_json::Value::Null),
                actor,
                move |tx, _, now| {
                    let sealed = tx
                        .tenant_keys(&t)?
                        .seal(&seal_context(id), secret.as_bytes())
                        .map_err(StoreError::from)?;
                    let until = now + ROTATION_OVERLAP.as_micros() as i64;
                    store::rotate_secret(tx, &t, id, &sealed, until)?;
                    let s = store::get(tx, &t, id)?.ok_or_else(|| not_found(id))?;
                    Ok(SubscriptionView::of(&s, None))
                },
            )
            .await?;
        Ok(SubscriptionView {
            secret: Some(shown),
            ..view
        })
    }

    /// Paused, disabled and failing subscriptions of the tenant.
    pub async fn hook_alerts(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<HookAlert>, ServiceError> {
        let t = tenant.clone();
        let list = self
            .store()
            .read(Some(tenant), move |tx| store::list(tx, &t, None))
            .await?;
        Ok(list
            .into_iter()
            .filter(|s| s.status != "active" || s.attempt > 0)
            .map(|s| HookAlert {
                subscription_id: s.subscription_id,
                client_id: s.client_id,
                url: s.url,
                status: s.status,
                failing_since: s.failing_since,
                failed_attempts: s.attempt,
            })
            .collect())
    }
}

/// Why a subscription is not delivering, as the administrator's page and
/// the API (`pause_reason`) say it. Derived from the row: a pause by hand
/// clears `failing_since`, the worker's 72-hour pause keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Paused by the worker: its receiver failed for more than 72 hours.
    Failing,
    /// Paused by hand: by the client through the API, or by the tenant
    /// administrator on the 通知先 page (the access log says who).
    ByRequest,
    /// Disabled: the receiver answered 410 Gone.
    Gone,
}

impl PauseReason {
    /// Why `s` is stopped (None: active).
    pub fn of(s: &Subscription) -> Option<Self> {
        match s.status.as_str() {
            "disabled" => Some(PauseReason::Gone),
            "paused" if s.failing_since.is_some() => Some(PauseReason::Failing),
            "paused" => Some(PauseReason::ByRequest),
            _ => None,
        }
    }

    /// The code the API answers with (`pause_reason`).
    pub fn code(self) -> &'static str {
        match self {
            PauseReason::Failing => "receiver_failing",
            PauseReason::ByRequest => "paused_by_request",
            PauseReason::Gone => "receiver_gone",
        }
    }
}

/// One subscription as the tenant administrator's page shows it: its state,
/// what was last delivered and the last attempt (times in µs, for 和暦).
#[derive(Debug, Clone)]
pub struct SubscriptionSummary {
    pub subscription_id: i64,
    pub client_id: String,
    pub url: String,
    /// Event types delivered (empty: every type).
    pub types: Vec<String>,
    /// `active`, `paused` or `disabled`.
    pub status: String,
    /// Why it is stopped (None: active).
    pub stopped: Option<PauseReason>,
    /// The last event sequence handled (delivered or filtered out).
    pub position: i64,
    /// Failed attempts of the next event so far.
    pub failed_attempts: i64,
    pub failing_since: Option<i64>,
    /// The next attempt, when retrying.
    pub next_attempt_at: Option<i64>,
    pub paused_at: Option<i64>,
    pub created_at: i64,
    /// The latest accepted delivery: (sequence, time).
    pub last_delivered: Option<(i64, i64)>,
    /// The latest attempt, accepted or not.
    pub last_attempt: Option<Attempt>,
}

impl SubscriptionSummary {
    fn of(
        s: Subscription,
        last_delivered: Option<(i64, i64)>,
        last_attempt: Option<Attempt>,
    ) -> Self {
        let stopped = PauseReason::of(&s);
        SubscriptionSummary {
            subscription_id: s.subscription_id,
            client_id: s.client_id,
            url: s.url,
            types: s.types,
            stopped,
            position: s.position,
            failed_attempts: s.attempt,
            failing_since: s.failing_since,
            next_attempt_at: (s.status == "active" && s.attempt > 0).then_some(s.next_attempt_at),
            paused_at: s.paused_at,
            created_at: s.created_at,
            status: s.status,
            last_delivered,
            last_attempt,
        }
    }
}

/// An API client the tenant administrator may subscribe: enabled and
/// holding a `subscriptions:write` scope (an approved proposal gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribingClient {
    pub client_id: String,
    pub system: String,
}

fn may_subscribe(c: &crate::store::accounts::ApiClient) -> bool {
    !c.disabled
        && machi_domain::access::Scope::parse_list(&c.scopes)
            .unwrap_or_default()
            .iter()
            .any(|s| s.resource == "subscriptions" && s.operation == "write")
}

/// A recent event offered as a replay starting point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPoint {
    pub seq: i64,
    pub kind: String,
    pub created_at: i64,
}

impl Registry {
    /// The tenant's subscriptions with their state, for the tenant
    /// administrator (every client's).
    pub async fn subscription_summaries(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<SubscriptionSummary>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                let mut out = Vec::new();
                for s in store::list(tx, &t, None)? {
                    let last = store::last_delivered(tx, &t, s.subscription_id)?;
                    let attempt = store::attempts(tx, &t, s.subscription_id, 1)?
                        .into_iter()
                        .next();
                    out.push(SubscriptionSummary::of(s, last, attempt));
                }
                Ok(out)
            })
            .await
    }

    /// One subscription (any client's) for the tenant administrator, with
    /// its latest `attempts` and events around its position to replay from.
    pub async fn subscription_for_admin(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        attempts: i64,
    ) -> Result<(SubscriptionSummary, Vec<Attempt>, Vec<ReplayPoint>), ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                let s = store::get(tx, &t, id)?.ok_or_else(|| not_found(id))?;
                let last = store::last_delivered(tx, &t, id)?;
                let list = store::attempts(tx, &t, id, attempts)?;
                let points =
                    records::events_after_of(tx, &t, (s.position - 30).max(0), &s.types, 60)?
                        .into_iter()
                        .map(|e| ReplayPoint {
                            seq: e.seq,
                            kind: e.kind,
                            created_at: e.created_at,
                        })
                        .collect();
                let first = list.first().cloned();
                Ok((SubscriptionSummary::of(s, last, first), list, points))
            })
            .await
    }

    /// The clients the tenant administrator may subscribe
    /// ([`SubscribingClient`]).
    pub async fn subscribing_clients(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<SubscribingClient>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let clients = self
            .store()
            .read(Some(tenant), move |tx| {
                crate::store::accounts::list_clients(tx, &t)
            })
            .await?;
        Ok(clients
            .into_iter()
            .filter(may_subscribe)
            .map(|c| SubscribingClient {
                client_id: c.client_id,
                system: c.system,
            })
            .collect())
    }

    /// The tenant administrator subscribes one of the tenant's clients: only
    /// an enabled client holding `subscriptions:write` (the administrator
    /// cannot send events to a receiver no approved client stands for).
    pub async fn create_subscription_for_client(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        req: NewSubscription,
        actor: &Actor,
    ) -> Result<SubscriptionView, ServiceError> {
        let eligible = self.subscribing_clients(tenant).await?;
        if !eligible.iter().any(|c| c.client_id == client_id) {
            let shown: String = client_id.chars().take(80).collect();
            return Err(invalid(
                "client_id",
                "client_cannot_subscribe",
                format!(
                    "連携先「{shown}」は通知を受けられません。通知（Webhook）の購読の権限を持つ、停止していない連携先を選んでください。"
                ),
                format!(
                    "client {shown:?} cannot receive webhooks: choose an enabled client holding the subscriptions scope"
                ),
            ));
        }
        self.create_subscription(tenant, client_id, req, actor)
            .await
    }
}

/// A starting sequence past the tenant's latest event (`after` of a new
/// subscription): the events between would never be delivered.
pub(crate) fn after_too_far(after: i64, last: i64) -> ServiceError {
    invalid(
        "after",
        "invalid_after",
        format!(
            "第{after}号の連携イベントはまだありません（最新は第{last}号です）。after には {last} 以下を指定してください。"
        ),
        format!(
            "there is no event {after} yet (the latest is {last}); after must be {last} or less"
        ),
    )
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::Invalid {
        field: "subscription_id".into(),
        code: "subscription_not_found",
        message_ja: format!("購読 {id} はありません。"),
        message_en: format!("no subscription {id}"),
    }
}

// ---------------------------------------------------------------- worker

/// Settings of the delivery worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Deliveries in flight at once (to different subscriptions, one each):
    /// subscriptions served side by side. 32 by default, so that one
    /// client's 20 ([`MAX_SUBSCRIPTIONS`]) are all served at once and
    /// caught-up ones can wait for the next commit with a slot to spare.
    pub concurrency: usize,
    /// How long a leased subscription stays with this worker without news
    /// (real time); a crashed worker's subscriptions are taken over after it.
    pub lease: Duration,
    /// How often to look for work committed by other processes (real time).
    pub poll: Duration,
    /// One request's time limit.
    pub request_timeout: Duration,
    /// Events delivered per lease before giving others a turn. They are
    /// read and recorded a chunk at a time (see [`CHUNK`]).
    pub batch: usize,
    /// The worker's clock runs this many times faster than the registry's
    /// (1: the registry's clock). Tests of the killed server only
    /// (`MACHI_WEBHOOK_CLOCK_SCALE`): the retry schedule of hours passes in
    /// seconds; leases and polls stay real time.
    pub clock_scale: u32,
    /// How long a caught-up subscription keeps its lease waiting for this
    /// process's next commit (see [`Worker::serve`]); zero: it parks at
    /// once (every new event then waits for a scan and a lease).
    pub linger: Duration,
    /// PostgreSQL: the worker's bookkeeping commits wait for the disk like
    /// the registry's changes (off by default: see
    /// [`store::relaxed_commit`]).
    pub durable_records: bool,
    /// The subscriptions of a tenant at the same position read their next
    /// events once between them (see [`SharedReads`]), and their lease
    /// checks and settles run in groups (see [`Group`]); off
    /// (`MACHI_WEBHOOK_SHARED_READS=0`), each reads its own events with
    /// its lease and settles alone, as before session 15 (kept for an A/B
    /// in one binary).
    pub shared_reads: bool,
    /// Shortest time between two reads of one subscription kept while
    /// caught up ([`ROUND_GAP`] by default; `MACHI_WEBHOOK_ROUND_MS`, at
    /// most 10 s).
    pub round_gap: Duration,
}

/// Shortest time between two scans for due subscriptions woken by this
/// process's commits.
pub const MIN_SCAN_GAP: Duration = Duration::from_millis(10);

/// Shortest time between two reads of one subscription that is kept
/// while caught up (see [`Worker::serve`]): at hundreds of commits a
/// second, one read and one write carry many events.
pub const ROUND_GAP: Duration = Duration::from_millis(20);

/// What a chunk left to do.
enum Step {
    /// The lease is kept and more events may be waiting.
    More,
    /// Caught up, the lease kept (`renewed`: extended by a whole lease
    /// just now): wait for the next commit.
    CaughtUp { renewed: bool },
    /// Settled (parked, failed, released) or not ours any more: stop.
    Done,
}

/// Most events one read takes and one write records (attempts and the
/// new position): the requests between them go out one after the other.
pub const CHUNK: usize = 50;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            request_timeout: Duration::from_secs(15),
            batch: 100,
            clock_scale: 1,
            linger: Duration::from_secs(1),
            durable_records: false,
            shared_reads: true,
            round_gap: ROUND_GAP,
        }
    }
}

impl WorkerConfig {
    /// The defaults, changed by `MACHI_WEBHOOK_CONCURRENCY`,
    /// `MACHI_WEBHOOK_LEASE_MS`, `MACHI_WEBHOOK_POLL_MS`,
    /// `MACHI_WEBHOOK_TIMEOUT_MS`, `MACHI_WEBHOOK_BATCH`, `MACHI_WEBHOOK_ROUND_MS`,
    /// `MACHI_WEBHOOK_LINGER_MS` (0 allowed), `MACHI_WEBHOOK_DURABLE_RECORDS`
    /// and `MACHI_WEBHOOK_SHARED_READS` (`1` or `0`) and (tests only) `MACHI_WEBHOOK_CLOCK_SCALE`. A value
    /// that is not a positive integer (or as said), or a lease not longer
    /// than the request time limit, is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        fn var(name: &str) -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!(
                        "{name}={v:?}: 正の整数で指定してください / must be a positive integer"
                    )),
                },
            }
        }
        let mut c = WorkerConfig::default();
        if let Some(n) = var("MACHI_WEBHOOK_CONCURRENCY")? {
            c.concurrency = n.min(1024) as usize;
        }
        if let Some(n) = var("MACHI_WEBHOOK_LEASE_MS")? {
            c.lease = Duration::from_millis(n);
        }
        if let Some(n) = var("MACHI_WEBHOOK_POLL_MS")? {
            c.poll = Duration::from_millis(n);
        }
        if let Some(n) = var("MACHI_WEBHOOK_TIMEOUT_MS")? {
            c.request_timeout = Duration::from_millis(n);
        }
        if let Some(n) = var("MACHI_WEBHOOK_BATCH")? {
            c.batch = n.min(100_000) as usize;
        }
        if let Ok(v) = std::env::var("MACHI_WEBHOOK_LINGER_MS") {
            match v.trim().parse::<u64>() {
                Ok(n) => c.linger = Duration::from_millis(n),
                Err(_) => {
                    return Err(format!(
                        "MACHI_WEBHOOK_LINGER_MS={v:?}: 0 以上の整数で指定してください / must be a whole number, 0 or more"
                    ));
                }
            }
        }
        if let Ok(v) = std::env::var("MACHI_WEBHOOK_DURABLE_RECORDS") {
            c.durable_records = match v.trim() {
                "1" => true,
                "0" => false,
                _ => {
                    return Err(format!(
                        "MACHI_WEBHOOK_DURABLE_RECORDS={v:?}: 1 か 0 で指定してください / must be 1 or 0"
                    ));
                }
            };
        }
        if let Ok(v) = std::env::var("MACHI_WEBHOOK_SHARED_READS") {
            c.shared_reads = match v.trim() {
                "1" => true,
                "0" => false,
                _ => {
                    return Err(format!(
                        "MACHI_WEBHOOK_SHARED_READS={v:?}: 1 か 0 で指定してください / must be 1 or 0"
                    ));
                }
            };
        }
        if let Some(n) = var("MACHI_WEBHOOK_ROUND_MS")? {
            c.round_gap = Duration::from_millis(n.min(10_000));
        }
        if let Some(n) = var("MACHI_WEBHOOK_CLOCK_SCALE")? {
            c.clock_scale = n.min(u64::from(u32::MAX)) as u32;
        }
        if c.lease <= c.request_timeout {
            return Err(format!(
                "MACHI_WEBHOOK_LEASE_MS ({} ms) は要求の時間制限 ({} ms) より長くしてください / must be longer than the request time limit",
                c.lease.as_millis(),
                c.request_timeout.as_millis()
            ));
        }
        Ok(c)
    }
}

/// The running worker; dropping it stops it (deliveries in flight are cut
/// off and retried by whoever leases the subscription next).
pub struct WorkerHandle {
    task: tokio::task::JoinHandle<()>,
    reads: Arc<std::sync::atomic::AtomicU64>,
    settles: Arc<std::sync::atomic::AtomicU64>,
    settle_batches: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WorkerHandle {
    pub fn stop(self) {}

    /// Chunks of events this worker read from the outbox (a shared read
    /// counts once).
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Settles this worker made (a chunk's attempts and position, one per
    /// subscription and chunk), and the transactions that wrote them
    /// (fewer when grouped).
    pub fn settles(&self) -> (u64, u64) {
        let settles = self.settles.load(std::sync::atomic::Ordering::Relaxed);
        let grouped = self
            .settle_batches
            .load(std::sync::atomic::Ordering::Relaxed);
        // Ungrouped, each settle is its own transaction.
        (settles, if grouped == 0 { settles } else { grouped })
    }
}

/// The delivery worker's HTTP client: [`http_client`] whose host names
/// resolve through [`PublicOnlyResolver`].
pub fn delivery_client(
    timeout: Duration,
    policy: HookPolicy,
) -> Result<reqwest::Client, ServiceError> {
    http_builder(timeout)
        .dns_resolver(Arc::new(PublicOnlyResolver(policy)))
        .build()
        .map_err(|e| ServiceError::Store(StoreError::Task(format!("HTTP client: {e}"))))
}

/// The HTTP client: rustls with the ring provider, no redirects.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ServiceError> {
    http_builder(timeout)
        .build()
        .map_err(|e| ServiceError::Store(StoreError::Task(format!("HTTP client: {e}"))))
}

fn http_builder(timeout: Duration) -> reqwest::ClientBuilder {
    // ring, not reqwest's default aws-lc-rs (a heavy C build); installed
    // once per process (a second install is refused, harmlessly). rustls
    // 0.23.48 marks ring's provider deprecated because ring has no
    // post-quantum key exchange; see docs/notes/wt-hooks.md.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("machi-webhooks/", env!("CARGO_PKG_VERSION")))
}

/// Starts the delivery worker on `registry`'s store.
pub fn spawn_worker(
    registry: Registry,
    config: WorkerConfig,
) -> Result<WorkerHandle, ServiceError> {
    let client = delivery_client(config.request_timeout, registry.hook_policy())?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| StoreError::Task(format!("random: {e}")))?;
    let clock = if config.clock_scale > 1 {
        Clock::scaled(config.clock_scale)
    } else {
        registry.clock()
    };
    let worker = Arc::new(Worker {
        registry,
        clock,
        client,
        owner: format!("w-{}", hex::encode(id)),
        config,
        shared: SharedReads::default(),
        reads: Arc::default(),
        checks: Group::default(),
        settles: Group::default(),
        settle_count: Arc::default(),
    });
    let reads = worker.reads.clone();
    let settles = worker.settle_count.clone();
    let settle_batches = worker.settles.batches.clone();
    let task = tokio::spawn(async move { worker.run().await });
    Ok(WorkerHandle {
        task,
        reads,
        settles,
        settle_batches,
    })
}

/// One event as it goes out: its number, id, commit time and CloudEvent
/// body, built once and sent alike to every subscription (the signature
/// differs).
struct Outgoing {
    seq: i64,
    id: String,
    created_at: i64,
    body: bytes::Bytes,
}

fn outgoing(tenant: &str, events: Vec<records::OutboxEvent>) -> Result<Vec<Outgoing>, StoreError> {
    events
        .into_iter()
        .map(|e| {
            let ce: CloudEvent = events::cloud_event(tenant, &e, rfc3339);
            let body = serde_json::to_vec(&ce).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Outgoing {
                seq: e.seq,
                id: ce.id,
                created_at: e.created_at,
                body: body.into(),
            })
        })
        .collect()
}

/// What names one shared read: the tenant, the position after which it
/// reads, the head up to which it reads, the subscription's type filter,
/// the most events it takes and whether the shield applies.
type ReadKey = (String, i64, i64, Vec<String>, usize, bool);

type ReadCell = Arc<tokio::sync::OnceCell<Arc<Vec<Outgoing>>>>;

/// How long a shared read serves later subscriptions at the same
/// position and head. The events up to a head never change, and every
/// change of a support measure moves the head (it is an event), so a
/// read names the same events, withheld alike, whoever asks; the bound
/// only keeps the map small. A shield that changed without an event (an
/// operator's `machi search refold` rewrites address keys without one)
/// takes effect within it, as if the send had been that much slower.
pub const SHARED_READ_FOR: Duration = Duration::from_millis(500);

/// Most shared reads held at once (over all tenants).
const SHARED_READS_MAX: usize = 256;

/// The worker's shared reads: the subscriptions of a tenant move in
/// lock-step (each commit wakes them all), so 20 of them would read,
/// parse, shield and serialise the same chunk 20 times. Instead each
/// reads its lease alone (one small statement) and the first at a given
/// (position, head, filter) reads the chunk, bounded by that head, while
/// the others wait for it ([`tokio::sync::OnceCell`]) and send the same
/// bytes.
#[derive(Default)]
struct SharedReads {
    inner: std::sync::Mutex<std::collections::HashMap<ReadKey, (Instant, ReadCell)>>,
}

impl SharedReads {
    /// Drops reads older than [`SHARED_READ_FOR`] (called by the worker's
    /// loop, so that an idle worker holds none).
    fn prune(&self) {
        Self::keep_fresh(
            &mut self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            Instant::now(),
        );
    }

    fn keep_fresh(m: &mut std::collections::HashMap<ReadKey, (Instant, ReadCell)>, now: Instant) {
        m.retain(|_, (at, _)| now.duration_since(*at) < SHARED_READ_FOR);
    }

    fn cell(&self, key: ReadKey) -> ReadCell {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((at, c)) = m.get(&key)
            && now.duration_since(*at) < SHARED_READ_FOR
        {
            return c.clone();
        }
        Self::keep_fresh(&mut m, now);
        if m.len() >= SHARED_READS_MAX {
            m.clear();
        }
        let c = ReadCell::default();
        m.insert(key, (now, c.clone()));
        c
    }
}

/// What a grouped request's waiter hears: its answer, or that it leads
/// the next round (its request is still queued; it runs the batch).
enum GroupMsg<A> {
    Done(Result<A, String>),
    Lead,
}

type GroupQueue<Q, A> = Vec<(u64, Q, Option<tokio::sync::oneshot::Sender<GroupMsg<A>>>)>;

/// Requests of one kind (a lease check, a settle) from the subscriptions
/// of one tenant, run together: the first to come runs its own at once
/// and, while it runs, later ones queue; when it ends, the first of them
/// runs the whole queue as one statement or transaction, and so on. The
/// subscriptions of a tenant move in lock-step, so 20 of them cost about
/// two database transactions a round instead of 20 each (group commit,
/// as the access log does). A tenant with a queue entry has a leader.
struct Group<Q, A> {
    queues: std::sync::Mutex<std::collections::HashMap<String, GroupQueue<Q, A>>>,
    tickets: std::sync::atomic::AtomicU64,
    /// Batches run (each one statement or transaction).
    batches: Arc<std::sync::atomic::AtomicU64>,
}

impl<Q, A> Default for Group<Q, A> {
    fn default() -> Self {
        Group {
            queues: Default::default(),
            tickets: Default::default(),
            batches: Default::default(),
        }
    }
}

/// Hands the tenant's queue to its next waiter (or ends it) when a
/// leader's round ends, however it ends (a cancelled leader included).
struct HandOver<'a, Q, A> {
    group: &'a Group<Q, A>,
    tenant: &'a str,
}

impl<Q, A> Drop for HandOver<'_, Q, A> {
    fn drop(&mut self) {
        let mut m = self.group.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = m.get_mut(self.tenant) else {
            return;
        };
        for entry in queue.iter_mut() {
            if let Some(waiter) = entry.2.take()
                && waiter.send(GroupMsg::Lead).is_ok()
            {
                return;
            }
        }
        // Nobody left waiting (the rest were cancelled): the queue ends.
        m.remove(self.tenant);
    }
}

/// A waiter's receiver: dropped (the waiter cancelled) after being told
/// to lead but before hearing it, it passes the lead on, so the queue
/// never stays without a leader.
struct Waiting<'a, Q, A> {
    rx: Option<tokio::sync::oneshot::Receiver<GroupMsg<A>>>,
    group: &'a Group<Q, A>,
    tenant: &'a str,
}

impl<Q, A> Drop for Waiting<'_, Q, A> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(GroupMsg::Lead) = rx.try_recv() {
                drop(HandOver {
                    group: self.group,
                    tenant: self.tenant,
                });
            }
        }
    }
}

impl<Q, A> Group<Q, A> {
    async fn run<F, Fut>(&self, tenant: &str, q: Q, f: F) -> Result<A, ServiceError>
    where
        F: FnOnce(Vec<Q>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<A>, ServiceError>>,
    {
        let ticket = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wait = {
            let mut m = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            match m.get_mut(tenant) {
                Some(queue) => {
                    queue.push((ticket, q, Some(tx)));
                    true
                }
                None => {
                    m.insert(tenant.to_string(), vec![(ticket, q, None)]);
                    false
                }
            }
        };
        if wait {
            let mut waiting = Waiting {
                rx: Some(rx),
                group: self,
                tenant,
            };
            let msg = match waiting.rx.as_mut() {
                Some(rx) => rx.await,
                None => return Err(StoreError::Task("grouped request lost".into()).into()),
            };
            // Received: nothing left to hand over if dropped now.
            waiting.rx = None;
            match msg {
                Ok(GroupMsg::Done(r)) => return r.map_err(|e| StoreError::Task(e).into()),
                Ok(GroupMsg::Lead) => {}
                Err(_) => return Err(StoreError::Task("grouped request dropped".into()).into()),
            }
        }
        let _hand_over = HandOver {
            group: self,
            tenant,
        };
        let batch = {
            let mut m = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            m.get_mut(tenant).map(std::mem::take).unwrap_or_default()
        };
        let mut own = None;
        let mut requests = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        for (i, (t, q, w)) in batch.into_iter().enumerate() {
            if t == ticket {
                own = Some(i);
            }
            requests.push(q);
            waiters.push(w);
        }
        let n = requests.len();
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answers = f(requests).await.and_then(|a| {
            if a.len() == n {
                Ok(a)
            } else {
                Err(StoreError::Task("grouped answers miscounted".into()).into())
            }
        });
        match answers {
            Ok(answers) => {
                let mut mine = None;
                for (i, (a, w)) in answers.into_iter().zip(waiters).enumerate() {
                    if Some(i) == own {
                        mine = Some(a);
                    } else if let Some(w) = w {
                        let _ = w.send(GroupMsg::Done(Ok(a)));
                    }
                }
                mine.ok_or_else(|| StoreError::Task("grouped request lost".into()).into())
            }
            Err(e) => {
                let text = e.to_string();
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(GroupMsg::Done(Err(text.clone())));
                }
                Err(e)
            }
        }
    }
}

/// Settles `which` of `batch` (by index) in one transaction, in
/// subscription order (two workers settling the same rows lock them in
/// the same order); whether each decision was written, in `which`'s order.
async fn settle_batch(
    store: &crate::store::Store,
    t: &MunicipalityCode,
    owner: &str,
    relaxed: bool,
    batch: &Arc<Vec<SettleRequest>>,
    mut which: Vec<usize>,
) -> Result<Vec<bool>, ServiceError> {
    let (t2, owner, batch) = (t.clone(), owner.to_string(), batch.clone());
    store
        .write_quiet(Some(t), move |tx| {
            if relaxed {
                store::relaxed_commit(tx)?;
            }
            let asked = which.clone();
            which.sort_by_key(|&i| batch[i].0);
            let mut kept = std::collections::HashMap::new();
            for i in which {
                let (id, settle, attempts, park) = &batch[i];
                kept.insert(
                    i,
                    store::settle_recorded(tx, &t2, *id, &owner, settle, attempts, *park)?,
                );
            }
            Ok::<_, ServiceError>(asked.iter().map(|i| kept[i]).collect())
        })
        .await
}

/// A lease checked in a group: the row as it is now (None: not ours any
/// more), the tenant's head and whether anyone is protected.
type Checked = (Option<Subscription>, i64, bool);

/// A settle in a group: the subscription, the decision, the chunk's
/// attempts and `park_unless_after`.
type SettleRequest = (i64, Settle, Vec<Attempt>, Option<i64>);

struct Worker {
    registry: Registry,
    /// Lease checks of a tenant's subscriptions, grouped.
    checks: Group<i64, Checked>,
    /// Settles of a tenant's subscriptions, grouped; each answered on its
    /// own (a failed batch is settled again one by one).
    settles: Group<SettleRequest, Result<bool, String>>,
    /// Settles made (see [`WorkerHandle::settles`]).
    settle_count: Arc<std::sync::atomic::AtomicU64>,
    /// Chunks read once for all the subscriptions at one position.
    shared: SharedReads,
    /// Chunks read (see [`WorkerHandle::reads`]).
    reads: Arc<std::sync::atomic::AtomicU64>,
    /// The registry's clock, or a faster one (see [`WorkerConfig::clock_scale`]).
    clock: Clock,
    client: reqwest::Client,
    owner: String,
    config: WorkerConfig,
}

type ServingSet = Arc<std::sync::Mutex<std::collections::HashSet<(String, i64)>>>;

/// Takes a subscription out of the worker's serving set when its task
/// ends, however it ends.
struct Serving(ServingSet, (String, i64));

impl Drop for Serving {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// Upper bounds of the commit-to-delivery lag buckets, in seconds.
pub const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0,
];

/// A subscription in metric labels: the tenant's 団体コード (public) and
/// the subscription's number, never its URL, its client or anything of an
/// event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub tenant: String,
    pub subscription: String,
}

/// [`SubscriptionLabels`] with the outcome of an attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabels {
    pub tenant: String,
    pub subscription: String,
    /// One of [`OUTCOMES`].
    pub outcome: &'static str,
}

/// The outcomes of an attempt, as metric labels: accepted (2xx); an error
/// status; 410 Gone (disabled); 429 Too Many Requests; no answer (no
/// connection, a timeout); not sent because the host name resolved only to
/// private addresses.
pub const OUTCOMES: [&str; 6] = [
    "delivered",
    "error_status",
    "gone",
    "throttled",
    "no_response",
    "private_address",
];

type LagFamily = prometheus_client::metrics::family::Family<
    SubscriptionLabels,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

fn lag_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(LAG_BUCKETS)
}

/// This process's delivery figures, shared by every worker and reported
/// on `/metrics` (see [`crate::api::metrics`]): totals without labels, and
/// per subscription ([`SubscriptionLabels`]: tenant code and subscription
/// number only).
pub struct HookCounters {
    /// Events a receiver accepted (2xx).
    pub delivered: prometheus_client::metrics::counter::Counter,
    /// Attempts that failed (an error status, a timeout, no connection).
    pub failed: prometheus_client::metrics::counter::Counter,
    /// From the event's commit to its accepted delivery, in seconds.
    pub lag: prometheus_client::metrics::histogram::Histogram,
    /// Attempts per subscription by outcome ([`OUTCOMES`]).
    pub attempts: prometheus_client::metrics::family::Family<
        OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Commit-to-delivery lag per subscription, in seconds.
    pub subscription_lag: LagFamily,
    /// Reads of a chunk of events from the outbox (a shared read counts
    /// once, however many subscriptions send it).
    pub reads: prometheus_client::metrics::counter::Counter,
}

fn labels(tenant: &MunicipalityCode, id: i64) -> SubscriptionLabels {
    SubscriptionLabels {
        tenant: tenant.to_string(),
        subscription: id.to_string(),
    }
}

/// Counts one attempt of a subscription (and its lag when accepted).
fn record_attempt(tenant: &MunicipalityCode, id: i64, outcome: &'static str, lag: Option<f64>) {
    let c = counters();
    let l = labels(tenant, id);
    if let Some(lag) = lag {
        c.delivered.inc();
        c.lag.observe(lag);
        c.subscription_lag.get_or_create(&l).observe(lag);
    } else {
        c.failed.inc();
    }
    c.attempts
        .get_or_create(&OutcomeLabels {
            tenant: l.tenant,
            subscription: l.subscription,
            outcome,
        })
        .inc();
}

/// Drops a deleted subscription's series (in this process).
fn forget_series(tenant: &MunicipalityCode, id: i64) {
    let c = counters();
    let l = labels(tenant, id);
    c.subscription_lag.remove(&l);
    for outcome in OUTCOMES {
        c.attempts.remove(&OutcomeLabels {
            tenant: l.tenant.clone(),
            subscription: l.subscription.clone(),
            outcome,
        });
    }
}

/// What became of one request, as an [`OUTCOMES`] label.
fn outcome_of(status: Option<u16>, error: Option<&str>) -> &'static str {
    match status {
        Some(200..=299) => "delivered",
        Some(410) => "gone",
        Some(429) => "throttled",
        Some(_) => "error_status",
        None if error.is_some_and(|e| e.contains(PRIVATE_ONLY)) => "private_address",
        None => "no_response",
    }
}

/// Marks the resolver's refusal in an attempt's error text.
pub const PRIVATE_ONLY: &str = "resolves to no public address";

/// Subscriptions of every tenant by status, for `/metrics`.
pub fn count_subscriptions(tx: &mut Tx<'_>) -> Result<Vec<(String, i64)>, StoreError> {
    store::count_by_status(tx)
}

/// The process's [`HookCounters`].
pub fn counters() -> &'static HookCounters {
    static C: std::sync::OnceLock<HookCounters> = std::sync::OnceLock::new();
    C.get_or_init(|| HookCounters {
        delivered: Default::default(),
        failed: Default::default(),
        lag: prometheus_client::metrics::histogram::Histogram::new(LAG_BUCKETS),
        attempts: Default::default(),
        subscription_lag: LagFamily::new_with_constructor(lag_histogram),
        reads: Default::default(),
    })
}

fn real_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The outcome of one request.
struct Sent {
    status: Option<u16>,
    retry_after: Option<Duration>,
    error: Option<String>,
    latency_ms: i64,
}

fn retry_after(
    h: Option<&reqwest::header::HeaderValue>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let v = h?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = (at.with_timezone(&chrono::Utc) - now).to_std().ok()?;
    Some(d.min(MAX_RETRY_AFTER))
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let mut commits = self.registry.store().commits();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency.max(1)));
        let done = Arc::new(tokio::sync::Notify::new());
        let mut tasks = tokio::task::JoinSet::new();
        // Subscriptions this worker is serving now. A delivery that outlasts
        // its lease (a slow receiver, a busy machine), or a replay while a
        // task is settling, would let the next scan lease the same
        // subscription again under the same owner name: served twice at
        // once, and the old task's settle would pass the owner check and
        // undo the replay. Such rows are left alone by the scan. Another
        // worker taking over an expired lease is the crash case and stays
        // allowed.
        let serving: ServingSet = Arc::default();
        // Something was committed here since the last scan: parked
        // (caught-up) subscriptions are due again.
        let mut woken = false;
        let mut last_scan = Instant::now() - MIN_SCAN_GAP;
        loop {
            while tasks.try_join_next().is_some() {}
            self.shared.prune();
            if woken {
                // Commits come by the hundred per second: one scan per gap
                // serves them all (subscriptions already being served read
                // the new events themselves).
                let since = last_scan.elapsed();
                if since < MIN_SCAN_GAP {
                    tokio::time::sleep(MIN_SCAN_GAP - since).await;
                    commits.borrow_and_update();
                }
            }
            last_scan = Instant::now();
            let free = slots.available_permits();
            let leased = if free > 0 {
                let busy = serving.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let leased = self.lease(free, busy, woken).await;
                woken = false;
                leased
            } else {
                if woken {
                    // No slot free now: unpark in the database, so that
                    // the next scan (when a slot frees) finds them due.
                    let relaxed = !self.config.durable_records;
                    let _ = self
                        .registry
                        .store()
                        .write_quiet(None, move |tx| {
                            if relaxed {
                                store::relaxed_commit(tx)?;
                            }
                            store::unpark_all(tx)
                        })
                        .await;
                    woken = false;
                }
                Vec::new()
            };
            for s in leased {
                let key = (s.tenant.to_string(), s.subscription_id);
                if !serving
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone())
                {
                    continue;
                }
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (w, done, serving, all) =
                    (self.clone(), done.clone(), serving.clone(), slots.clone());
                tasks.spawn(async move {
                    let _serving = Serving(serving, key);
                    w.serve(s, &all).await;
                    drop(permit);
                    done.notify_one();
                });
            }
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() { return; }
                    // Something was committed here: caught-up subscriptions look again.
                    commits.borrow_and_update();
                    woken = true;
                }
                _ = done.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    async fn lease(
        &self,
        limit: usize,
        serving: std::collections::HashSet<(String, i64)>,
        woken: bool,
    ) -> Vec<Subscription> {
        let now = self.clock.now().timestamp_micros();
        let real = real_now();
        let until = real + self.config.lease.as_micros() as i64;
        let owner = self.owner.clone();
        let relaxed = !self.config.durable_records;
        let r = self
            .registry
            .store()
            .write_quiet(None, move |tx| {
                if relaxed {
                    store::relaxed_commit(tx)?;
                }
                store::lease_due(tx, &owner, now, real, until, limit as i64, &serving, woken)
            })
            .await;
        match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: leasing due subscriptions failed");
                Vec::new()
            }
        }
    }

    /// Delivers a leased subscription's next events in order, a chunk at a
    /// time, until it is caught up, fails, has had [`WorkerConfig::batch`]
    /// events or a third of its lease (then it is released for the next
    /// scan, so others get a turn and the lease never runs out under a
    /// healthy worker).
    ///
    /// Caught up while a slot of the worker is free (nobody waits for
    /// one), it keeps the lease and waits for this process's next commit
    /// (at most [`WorkerConfig::linger`]) instead of parking: the next
    /// events go out without a park, a scan and a lease in between. Reads
    /// are at least [`WorkerConfig::round_gap`] apart, so that at hundreds of commits a
    /// second one read and one write carry many events.
    async fn serve(&self, mut s: Subscription, slots: &tokio::sync::Semaphore) {
        let mut deadline = Instant::now() + self.config.lease / 3;
        let mut left = self.config.batch.max(1);
        let mut commits = self.registry.store().commits();
        // False once a wait saw no commit here for a whole linger: the
        // next catch-up parks.
        let mut lingering = !self.config.linger.is_zero();
        loop {
            commits.borrow_and_update();
            let read_at = Instant::now();
            let may_linger =
                lingering && slots.available_permits() > 0 && Instant::now() < deadline;
            match self.chunk(&mut s, &mut left, deadline, may_linger).await {
                Ok(Step::More) => continue,
                Ok(Step::Done) => return,
                Ok(Step::CaughtUp { renewed }) => {
                    if renewed {
                        // The lease was just extended by a whole lease.
                        deadline = Instant::now() + self.config.lease / 3;
                    }
                    // Nobody waits for a slot: a fresh batch.
                    left = self.config.batch.max(1);
                    let until = (Instant::now() + self.config.linger).min(deadline);
                    tokio::select! {
                        changed = commits.changed() => {
                            if changed.is_err() {
                                lingering = false;
                            }
                        }
                        _ = tokio::time::sleep_until(until.into()) => lingering = false,
                    }
                    tokio::time::sleep_until((read_at + self.config.round_gap).into()).await;
                }
                Err(e) => {
                    tracing::warn!(tenant = %s.tenant, subscription = s.subscription_id, error = %e, "webhooks: delivery failed");
                    // Released for the next scan (if still ours); the
                    // attempts of this chunk are not on record, their
                    // events are sent again.
                    let (t, id, owner) = (s.tenant.clone(), s.subscription_id, self.owner.clone());
                    let relaxed = !self.config.durable_records;
                    let _ = self
                        .registry
                        .store()
                        .write_quiet(Some(&s.tenant), move |tx| {
                            if relaxed {
                                store::relaxed_commit(tx)?;
                            }
                            store::release(tx, &t, id, &owner)
                        })
                        .await;
                    return;
                }
            }
        }
    }

    /// Records a chunk's attempts and writes the worker's decision in one
    /// transaction. With `park_unless_after`, a subscription being parked
    /// is released instead (due at once) if an event after that sequence
    /// was committed meanwhile, so a commit between the read and the park
    /// never waits for the poll.
    async fn settle(
        &self,
        s: &Subscription,
        settle: Settle,
        attempts: Vec<Attempt>,
        park_unless_after: Option<i64>,
    ) -> Result<bool, ServiceError> {
        let (t, id, owner) = (s.tenant.clone(), s.subscription_id, self.owner.clone());
        let relaxed = !self.config.durable_records;
        self.settle_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.config.shared_reads {
            let store = self.registry.store().clone();
            let answer = self
                .settles
                .run(
                    s.tenant.as_str(),
                    (id, settle, attempts, park_unless_after),
                    |batch| async move {
                        let batch = Arc::new(batch);
                        let n = batch.len();
                        let all: Vec<usize> = (0..n).collect();
                        match settle_batch(&store, &t, &owner, relaxed, &batch, all).await {
                            Ok(kept) => Ok(kept.into_iter().map(Ok).collect()),
                            // Alone, its own error.
                            Err(e) if n == 1 => Ok(vec![Err(e.to_string())]),
                            // One settle's failure must not undo the others':
                            // each again in a transaction of its own.
                            Err(_) => {
                                let mut answers = Vec::with_capacity(n);
                                for i in 0..n {
                                    answers.push(
                                        settle_batch(&store, &t, &owner, relaxed, &batch, vec![i])
                                            .await
                                            .map(|k| k[0])
                                            .map_err(|e| e.to_string()),
                                    );
                                }
                                Ok(answers)
                            }
                        }
                    },
                )
                .await?;
            return answer.map_err(|e| StoreError::Task(e).into());
        }
        let alone = Arc::new(vec![(id, settle, attempts, park_unless_after)]);
        settle_batch(self.registry.store(), &t, &owner, relaxed, &alone, vec![0])
            .await
            .map(|kept| kept[0])
    }

    /// One chunk: reads up to [`CHUNK`] next events (and the secrets as
    /// they are now), sends them one after the other until one fails,
    /// then records every attempt and the new position in one write.
    /// Caught up with `may_linger`, the lease is kept (not parked), and
    /// nothing is written when there was nothing to send.
    async fn chunk(
        &self,
        s: &mut Subscription,
        left: &mut usize,
        deadline: Instant,
        may_linger: bool,
    ) -> Result<Step, ServiceError> {
        let limit = (*left).clamp(1, CHUNK);
        let (t, after, types, id) = (
            s.tenant.clone(),
            s.position,
            s.types.clone(),
            s.subscription_id,
        );
        // One snapshot (SQLite's read transaction, PostgreSQL's
        // REPEATABLE READ): `last` and the events agree. With shared
        // reads, only the lease and the head are read here (no events);
        // the events up to that head come from the shared read below.
        let owner = self.owner.clone();
        let shared = self.config.shared_reads;
        let (own, last, current) = if shared {
            // The lease, the row and the head, checked with the other
            // subscriptions of the tenant in one statement.
            let store = self.registry.store().clone();
            let (row, head, protected) = self
                .checks
                .run(s.tenant.as_str(), id, |ids| async move {
                    let (owner2, asked, t2) = (owner.clone(), ids.clone(), t.clone());
                    let (rows, head, protected) = store
                        .read(Some(&t), move |tx| {
                            store::leased_many(tx, &t2, &owner2, &asked)
                        })
                        .await
                        .map_err(ServiceError::from)?;
                    Ok(ids
                        .iter()
                        .map(|i| {
                            let row = rows.iter().find(|r| r.subscription_id == *i).cloned();
                            (row, head, protected)
                        })
                        .collect())
                })
                .await?;
            (Vec::new(), head, row.map(|r| (r, protected)))
        } else {
            self.registry
                .store()
                .read(Some(&s.tenant), move |tx| {
                    // Paused, replayed, resumed or deleted meanwhile (the lease
                    // taken back), or taken over: not ours to send. One
                    // statement on PostgreSQL gives the lease, the secrets as
                    // they are now (a rotation while this lease is held signs
                    // the next chunk with both), the tenant's head, whether
                    // anyone is protected and the events.
                    let Some(c) =
                        store::leased_chunk(tx, &t, id, &owner, after, &types, limit as i64)?
                    else {
                        return Ok((Vec::new(), 0, None));
                    };
                    let next = if c.events.is_empty() || !c.protected {
                        c.events
                    } else {
                        super::registry::withhold_protected(tx, &t, c.events)?
                    };
                    Ok::<_, ServiceError>((next, c.head, Some((c.subscription, c.protected))))
                })
                .await?
        };
        let Some((c, protected)) = current else {
            // Not ours any more: nothing to settle.
            return Ok(Step::Done);
        };
        s.secret = c.secret;
        s.previous_secret = c.previous_secret;
        s.previous_until = c.previous_until;
        let events: Arc<Vec<Outgoing>> = if !shared {
            self.count_read();
            Arc::new(outgoing(s.tenant.as_str(), own)?)
        } else if last <= after {
            Arc::default()
        } else {
            self.shared_read(&s.tenant, after, last, &s.types, limit, protected)
                .await?
        };
        // Fewer than asked: every event up to `last` is here or filtered out.
        let caught_up = events.len() < limit;
        if events.is_empty() && may_linger {
            // Caught up, the lease kept: nothing to write.
            return Ok(Step::CaughtUp { renewed: false });
        }
        if events.is_empty() {
            // Caught up: park until something is committed (or the poll).
            let settle = Settle {
                position: last.max(s.position),
                attempt: 0,
                next_attempt_at: s.next_attempt_at,
                failing_since: None,
                status: "active".into(),
                paused_at: None,
                lease_owner: None,
                lease_until: real_now() + self.config.poll.as_micros() as i64,
            };
            self.settle(s, settle, Vec::new(), Some(last)).await?;
            return Ok(Step::Done);
        }
        let clock = self.clock;
        let keys = self
            .registry
            .store()
            .keyring()
            .tenant(&s.tenant)
            .map_err(StoreError::from)?;
        let ctx = seal_context(s.subscription_id);
        let secret = keys.open_str(&ctx, &s.secret).map_err(StoreError::from)?;
        let previous = match (&s.previous_secret, s.previous_until) {
            (Some(prev), Some(until)) if until > clock.now().timestamp_micros() => {
                Some(keys.open_str(&ctx, prev).map_err(StoreError::from)?)
            }
            _ => None,
        };
        let mut attempts = Vec::with_capacity(events.len());
        let mut failure = None;
        let mut sent_all = true;
        let n = events.len();
        for (i, event) in events.iter().enumerate() {
            let now = clock.now();
            let ts = now.timestamp();
            let mut signature = sign(&secret, &event.id, ts, &event.body)?;
            if let Some(prev) = &previous {
                signature.push(' ');
                signature.push_str(&sign(prev, &event.id, ts, &event.body)?);
            }
            let sent = self
                .send(&s.url, &event.id, ts, &signature, event.body.clone())
                .await;
            let at_us = clock.now().timestamp_micros();
            attempts.push(Attempt {
                attempt_id: 0,
                seq: event.seq,
                webhook_id: event.id.clone(),
                at: now.timestamp_micros(),
                status: sent.status.map(i64::from),
                latency_ms: sent.latency_ms,
                error: sent.error.clone(),
            });
            let ok = sent.status.is_some_and(|c| (200..300).contains(&c));
            record_attempt(
                &s.tenant,
                s.subscription_id,
                outcome_of(sent.status, sent.error.as_deref()),
                ok.then(|| (real_now() - event.created_at).max(0) as f64 / 1e6),
            );
            if ok {
                s.position = event.seq;
                s.attempt = 0;
                s.failing_since = None;
                s.next_attempt_at = at_us;
                *left = left.saturating_sub(1);
            } else {
                failure = Some(self.after_failure(s, &sent, now.timestamp_micros(), at_us));
                break;
            }
            if i + 1 < n && (Instant::now() >= deadline || *left == 0) {
                sent_all = false;
                break;
            }
        }
        let mut park_unless_after = None;
        let mut lingers = false;
        let settle = match failure {
            Some(f) => f,
            None => {
                let base = Settle {
                    position: s.position,
                    attempt: 0,
                    next_attempt_at: s.next_attempt_at,
                    failing_since: None,
                    status: "active".into(),
                    paused_at: None,
                    lease_owner: None,
                    lease_until: 0,
                };
                if sent_all && caught_up && may_linger {
                    // Everything up to `last` delivered or filtered out;
                    // the lease kept for the next commit.
                    lingers = true;
                    Settle {
                        position: last.max(s.position),
                        lease_owner: Some(self.owner.clone()),
                        lease_until: real_now() + self.config.lease.as_micros() as i64,
                        ..base
                    }
                } else if sent_all && caught_up {
                    // Everything up to `last` delivered or filtered out.
                    park_unless_after = Some(last);
                    Settle {
                        position: last.max(s.position),
                        lease_until: real_now() + self.config.poll.as_micros() as i64,
                        ..base
                    }
                } else if *left == 0 || Instant::now() >= deadline {
                    // Released: the next scan takes it again at once.
                    base
                } else {
                    Settle {
                        lease_owner: Some(self.owner.clone()),
                        lease_until: real_now() + self.config.lease.as_micros() as i64,
                        ..base
                    }
                }
            }
        };
        let keep = settle.lease_owner.is_some();
        let position = settle.position;
        let kept = self.settle(s, settle, attempts, park_unless_after).await?;
        s.position = position;
        Ok(match (kept && keep, lingers) {
            (false, _) => Step::Done,
            (true, true) => Step::CaughtUp { renewed: true },
            (true, false) => Step::More,
        })
    }

    /// The decision after a failed attempt at `at_us` (sent at `sent_us`):
    /// 410 disables; otherwise the next try per [`RETRY_SCHEDULE`] plus
    /// jitter (or the receiver's Retry-After on 429/503), paused after
    /// [`PAUSE_AFTER`] of failures through the whole schedule.
    fn after_failure(&self, s: &Subscription, sent: &Sent, sent_us: i64, at_us: i64) -> Settle {
        if sent.status == Some(410) {
            tracing::warn!(tenant = %s.tenant, subscription = s.subscription_id, "webhooks: receiver answered 410 Gone; subscription disabled");
            return Settle {
                position: s.position,
                attempt: s.attempt + 1,
                next_attempt_at: at_us,
                failing_since: s.failing_since.or(Some(at_us)),
                status: "disabled".into(),
                paused_at: Some(at_us),
                lease_owner: None,
                lease_until: 0,
            };
        }
        let failures = s.attempt + 1;
        let since = s.failing_since.unwrap_or(sent_us);
        let failing_for = Duration::from_micros((at_us - since).max(0) as u64);
        let scheduled = RETRY_SCHEDULE[(failures as usize - 1).min(RETRY_SCHEDULE.len() - 1)];
        // Jitter: up to +10 %, never shorter than the schedule.
        let jitter = fastrand::u64(0..=scheduled / 10);
        let mut delay = Duration::from_secs(scheduled + jitter);
        if matches!(sent.status, Some(429 | 503))
            && let Some(ra) = sent.retry_after
        {
            delay = ra;
        }
        let pause = failures as usize > RETRY_SCHEDULE.len() && failing_for >= PAUSE_AFTER;
        if pause {
            tracing::warn!(tenant = %s.tenant, subscription = s.subscription_id, "webhooks: failing for more than 72 hours; subscription paused");
        }
        Settle {
            position: s.position,
            attempt: failures,
            next_attempt_at: at_us + delay.as_micros() as i64,
            failing_since: Some(since),
            status: if pause { "paused" } else { "active" }.into(),
            paused_at: pause.then_some(at_us),
            lease_owner: None,
            lease_until: 0,
        }
    }

    fn count_read(&self) {
        counters().reads.inc();
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The events after `after` up to `head` that pass `types`, at most
    /// `limit`, shielded when `protected`, with their bodies: read once
    /// for every subscription that asks the same (see [`SharedReads`]);
    /// a failed read is not kept (the next asker reads again).
    async fn shared_read(
        &self,
        tenant: &MunicipalityCode,
        after: i64,
        head: i64,
        types: &[String],
        limit: usize,
        protected: bool,
    ) -> Result<Arc<Vec<Outgoing>>, ServiceError> {
        let cell = self.shared.cell((
            tenant.to_string(),
            after,
            head,
            types.to_vec(),
            limit,
            protected,
        ));
        let read = cell
            .get_or_try_init(|| async {
                let (t, types) = (tenant.clone(), types.to_vec());
                let events = self
                    .registry
                    .store()
                    .read(Some(tenant), move |tx| {
                        let e = store::events_between(tx, &t, after, head, &types, limit as i64)?;
                        if e.is_empty() || !protected {
                            Ok::<_, ServiceError>(e)
                        } else {
                            super::registry::withhold_protected(tx, &t, e)
                        }
                    })
                    .await?;
                self.count_read();
                Ok::<_, ServiceError>(Arc::new(outgoing(tenant.as_str(), events)?))
            })
            .await?;
        Ok(read.clone())
    }

    async fn send(
        &self,
        url: &str,
        id: &str,
        ts: i64,
        signature: &str,
        body: bytes::Bytes,
    ) -> Sent {
        let started = Instant::now();
        let r = self
            .client
            .post(url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as i64;
        match r {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let ra = retry_after(resp.headers().get("retry-after"), chrono::Utc::now());
                Sent {
                    status: Some(status),
                    retry_after: ra,
                    error: (!resp.status().is_success()).then(|| format!("HTTP {status}")),
                    latency_ms,
                }
            }
            Err(e) => {
                // The causes too: reqwest's own text does not say why
                // (refused, timed out, a private address). The URL is on
                // the subscription already.
                let e = e.without_url();
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    let c_text = c.to_string();
                    if !text.contains(&c_text) {
                        text.push_str(": ");
                        text.push_str(&c_text);
                    }
                    cause = c.source();
                }
                Sent {
                    status: None,
                    retry_after: None,
                    error: Some(text.chars().take(300).collect()),
                    latency_ms,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests that come while a batch runs wait and go together in the
    /// next one; each gets its own answer.
    #[tokio::test]
    async fn requests_during_a_batch_go_together_in_the_next() {
        let group: Arc<Group<u32, u32>> = Arc::default();
        let gate = Arc::new(tokio::sync::Notify::new());
        let (g, open) = (group.clone(), gate.clone());
        let first = tokio::spawn(async move {
            g.run("t", 1, |qs| async move {
                open.notified().await;
                Ok(qs.iter().map(|q| q * 10).collect())
            })
            .await
        });
        // The first batch is running (waiting at the gate).
        while group.batches.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let mut later = Vec::new();
        for q in 2..=4u32 {
            let g = group.clone();
            later.push(tokio::spawn(async move {
                g.run("t", q, |qs| async move {
                    Ok(qs.iter().map(|q| q * 10).collect())
                })
                .await
            }));
        }
        while group.queues.lock().unwrap()["t"].len() < 3 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 10);
        for (q, h) in (2..=4u32).zip(later) {
            let answer = tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("a waiting request is led by the next batch")
                .unwrap()
                .unwrap();
            assert_eq!(answer, q * 10);
        }
        assert_eq!(
            group.batches.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "one batch for the first, one for the three that waited"
        );
        assert!(group.queues.lock().unwrap().is_empty(), "the queue ended");
    }

    /// A waiter told to lead but cancelled before it heard so passes the
    /// lead on: the next waiter runs the queue (its request and the
    /// cancelled one's), nobody hangs.
    #[tokio::test]
    async fn a_waiter_cancelled_after_being_told_to_lead_passes_it_on() {
        let group: Arc<Group<u32, u32>> = Arc::default();
        // A queue whose leader is busy: first the waiter to be cancelled,
        // then a real one.
        let (tx, rx) = tokio::sync::oneshot::channel();
        group
            .queues
            .lock()
            .unwrap()
            .insert("t".into(), vec![(1000, 1, Some(tx))]);
        let g = group.clone();
        let next = tokio::spawn(async move {
            g.run("t", 2, |qs| async move {
                Ok(qs.iter().map(|q| q * 10).collect())
            })
            .await
        });
        while group.queues.lock().unwrap()["t"].len() < 2 {
            tokio::task::yield_now().await;
        }
        let cancelled = Waiting {
            rx: Some(rx),
            group: &*group,
            tenant: "t",
        };
        // The leader's batch ends: the first waiter is told to lead ...
        drop(HandOver {
            group: &*group,
            tenant: "t",
        });
        // ... and is cancelled before it heard.
        drop(cancelled);
        let answer = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the lead was passed on")
            .unwrap()
            .unwrap();
        assert_eq!(answer, 20);
        assert!(group.queues.lock().unwrap().is_empty());
    }

    /// A leader cancelled mid-batch hands the queue to the next waiter, and
    /// a failed batch fails each of its requests (none hangs).
    #[tokio::test]
    async fn a_cancelled_leader_hands_over_and_a_failure_reaches_all() {
        let group: Arc<Group<u32, u32>> = Arc::default();
        let g = group.clone();
        let stuck = tokio::spawn(async move {
            g.run("t", 1, |_| async move {
                std::future::pending::<()>().await;
                Ok(vec![0])
            })
            .await
        });
        while group.batches.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let mut waiting = Vec::new();
        for q in 2..=3u32 {
            let g = group.clone();
            waiting.push(tokio::spawn(async move {
                g.run("t", q, |_| async move {
                    Err(ServiceError::Store(StoreError::Task("down".into())))
                })
                .await
            }));
        }
        while group.queues.lock().unwrap()["t"].len() < 2 {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        let _ = stuck.await;
        for h in waiting {
            let r = tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("no request hangs")
                .unwrap();
            assert!(r.is_err());
        }
        assert!(group.queues.lock().unwrap().is_empty());
    }
}

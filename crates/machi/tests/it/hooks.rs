//! The linkage hub: the CloudEvents pull feed (type filter, long poll) and
//! webhooks delivered to a real HTTP receiver by the real worker, signed
//! per Standard Webhooks (checked here with an HMAC of our own), in order,
//! through failures, 410, 429 Retry-After, pauses, replays, restarts and
//! (PostgreSQL and SQLite alike) two workers at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::hooks::{HookPolicy, WorkerConfig, WorkerHandle, spawn_worker};
use machi::service::{Actor, Clock, Registry};
use machi_domain::change::ChangeRequest;
use machi_domain::dates::EraTable;
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

use crate::api::{Api, call};
use crate::contract::takahashi_family;
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    feed_is_cloudevents_filtered_and_long_polled,
    support_measure_events_carry_no_address,
    deliveries_are_signed_in_order_and_rotation_sends_two_signatures,
    a_receiver_failing_then_recovering_gets_everything_in_order,
    gone_disables_the_subscription,
    retry_after_is_honoured,
    failing_for_72_hours_pauses_then_replay_delivers_everything,
    a_worker_restart_mid_delivery_loses_nothing,
    two_workers_deliver_each_event_once,
    a_pause_stops_a_subscription_kept_while_caught_up,
    bad_subscriptions_are_refused_in_both_languages,
    another_servers_commit_wakes_the_long_poll_and_the_worker,
    a_start_past_the_latest_event_is_refused_on_create_and_on_the_feed,
    a_prefix_pattern_is_kept_and_takes_types_added_later,
    a_client_pauses_and_resumes_its_subscription_through_the_api,
    every_subscription_gets_the_feeds_bytes_and_a_replay_is_withheld_once_a_measure_begins,
    subscriptions_at_one_position_share_one_read_and_send_the_same_bytes,
    a_receiver_that_takes_the_request_and_never_answers_is_timed_out_and_retried,
);

// ---------------------------------------------------------------- receiver

#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    pub(crate) id: String,
    pub(crate) timestamp: i64,
    pub(crate) signature: String,
    pub(crate) body: Vec<u8>,
    pub(crate) seq: i64,
}

/// What the receiver answers next: (status, Retry-After, delay).
type Script = VecDeque<(u16, Option<&'static str>, Duration)>;

#[derive(Default)]
struct Inbox {
    /// Every request, accepted or not.
    all: Vec<Receipt>,
    /// Requests answered 2xx.
    ok: Vec<Receipt>,
    script: Script,
    /// Answer this to everything once the script is done (default 200).
    otherwise: Option<u16>,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    inbox: Arc<Mutex<Inbox>>,
    pub(crate) url: String,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let inbox: Arc<Mutex<Inbox>> = Arc::default();
        let state = inbox.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let inbox = state.clone();
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let r = Receipt {
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp").parse().unwrap_or(0),
                        signature: h("webhook-signature"),
                        body: body.to_vec(),
                        seq: v["sequence"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(-1),
                    };
                    let (status, retry, delay) = {
                        let mut i = inbox.lock().unwrap();
                        i.all.push(r.clone());
                        i.script.pop_front().unwrap_or((
                            i.otherwise.unwrap_or(200),
                            None,
                            Duration::ZERO,
                        ))
                    };
                    tokio::time::sleep(delay).await;
                    if (200..300).contains(&status) {
                        inbox.lock().unwrap().ok.push(r);
                    }
                    let mut res = axum::response::Response::new(Body::empty());
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(ra) = retry {
                        res.headers_mut().insert("retry-after", ra.parse().unwrap());
                    }
                    res
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            inbox,
            url: format!("http://127.0.0.1:{}/hook", addr.port()),
        }
    }

    pub(crate) fn script(&self, s: &[(u16, Option<&'static str>, Duration)]) {
        self.inbox.lock().unwrap().script.extend(s.iter().cloned());
    }

    pub(crate) fn otherwise(&self, status: Option<u16>) {
        self.inbox.lock().unwrap().otherwise = status;
    }

    pub(crate) fn ok(&self) -> Vec<Receipt> {
        self.inbox.lock().unwrap().ok.clone()
    }

    pub(crate) fn all(&self) -> Vec<Receipt> {
        self.inbox.lock().unwrap().all.clone()
    }

    /// Waits (real time, up to `limit`) until `n` requests were accepted.
    pub(crate) async fn wait_ok(&self, n: usize, limit: Duration) -> Vec<Receipt> {
        let start = Instant::now();
        loop {
            let ok = self.ok();
            if ok.len() >= n || start.elapsed() > limit {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Standard Webhooks verification, written here from the spec (not the
/// code under test): base64(HMAC-SHA256(key, "{id}.{ts}.{body}")).
pub(crate) fn expected_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    mac.update(&msg);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------- setup

struct Hub {
    db: TestDb,
    api: Api,
    /// The registry the workers run on (its clock may be scaled).
    worker_registry: Registry,
}

pub(crate) fn fast(poll_ms: u64, lease_ms: u64) -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(poll_ms),
        request_timeout: Duration::from_secs(10),
        batch: 100,
        clock_scale: 1,
        ..WorkerConfig::default()
    }
}

/// The API on the system clock (tokens live 10 minutes); workers on
/// `worker_clock` over the same database.
async fn hub(db: TestDb, worker_clock: Clock) -> Hub {
    let db = db.with_tenants().await;
    let policy = HookPolicy {
        allow_insecure_local: true,
        allow_private: false,
        require_resolvable: false,
    };
    let registry = Registry::new(db.store.clone(), EraTable::standard(), Clock::System)
        .with_hook_policy(policy);
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    let scopes = "test:events:read test:subscriptions:write test:changes:write";
    let (id, secret) = db
        .registry
        .create_client(&code(FUCHU), "test", scopes, &Actor::system("setup"))
        .await
        .unwrap();
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let res = router
        .clone()
        .oneshot(
            Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let token = format!("Bearer {}", v["access_token"].as_str().unwrap());
    let worker_registry = Registry::new(db.store.clone(), EraTable::standard(), worker_clock)
        .with_hook_policy(policy);
    Hub {
        db,
        api: Api {
            router,
            headers: vec![("authorization".into(), token)],
        },
        worker_registry,
    }
}

impl Hub {
    fn worker(&self, config: WorkerConfig) -> WorkerHandle {
        spawn_worker(self.worker_registry.clone(), config).unwrap()
    }

    /// Replays subscription `id` from event `from` through the API (200).
    async fn replay(&self, id: i64, from: i64) {
        let (s, v) = call(
            &self.api,
            "POST",
            &format!("/api/v1/tenants/{FUCHU}/subscriptions/{id}/replay"),
            Some(json!({"from": from})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    async fn subscribe(&self, body: Value) -> Value {
        let (s, v) = call(
            &self.api,
            "POST",
            &format!("/api/v1/tenants/{FUCHU}/subscriptions"),
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn subscription(&self, id: i64) -> Value {
        let (s, v) = call(
            &self.api,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Commits one change (a family moving in); returns its event sequence.
    async fn change(&self) -> i64 {
        let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
        self.db
            .registry
            .submit(&code(FUCHU), &req, &Actor::system("clerk"))
            .await
            .unwrap()
            .event_seq
    }

    /// The subscription once `n` attempts are on record (the receiver may
    /// see a request before the worker records its answer).
    async fn with_attempts(&self, id: i64, n: usize) -> Value {
        let start = Instant::now();
        loop {
            let v = self.subscription(id).await;
            if v["attempts"].as_array().unwrap().len() >= n
                || start.elapsed() > Duration::from_secs(60)
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_status(&self, id: i64, status: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.subscription(id).await;
            if v["subscription"]["status"] == status || start.elapsed() > limit {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn seqs(r: &[Receipt]) -> Vec<i64> {
    r.iter().map(|r| r.seq).collect()
}

/// `/metrics` as text.
async fn metrics(h: &Hub) -> String {
    let res = h
        .api
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The value of one series in an exposition (0 if absent).
fn figure(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A host name (not `localhost`) that this machine's /etc/hosts maps to a
/// loopback or private address.
pub(crate) fn local_host_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let ip: std::net::IpAddr = f.next()?.parse().ok()?;
            let local = match ip {
                std::net::IpAddr::V4(v) => v.is_loopback() || v.is_private(),
                std::net::IpAddr::V6(v) => v.is_loopback(),
            };
            local.then(|| f.find(|n| !n.eq_ignore_ascii_case("localhost") && !n.contains(':')))?
        })
        .next()
        .map(str::to_string)
        .expect("a host name for a local address in /etc/hosts")
}

fn attempts_at(v: &Value) -> Vec<(i64, Option<i64>, chrono::DateTime<chrono::FixedOffset>)> {
    let mut a: Vec<_> = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["seq"].as_i64().unwrap(),
                a["status"].as_i64(),
                chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    a.reverse();
    a
}

// ---------------------------------------------------------------- pull feed

async fn feed_is_cloudevents_filtered_and_long_polled(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let first = h.change().await;
    let (s, v) = call(
        &h.api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = &v["events"][0];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], format!("{FUCHU}-{first}"));
    assert_eq!(e["source"], format!("/machi/tenants/{FUCHU}"));
    assert_eq!(e["type"], "jp.machi.registry.change.move_in.v1");
    assert_eq!(e["subject"], "changes/1");
    assert_eq!(e["sequence"], format!("{first:020}"));
    assert!(chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).is_ok());
    let persons = e["data"]["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 3);
    for p in persons {
        assert!(p["addressee_number"].is_string() && p["history_number"].is_i64());
        assert!(p["household_number"].is_string());
    }
    let text = e.to_string();
    for secret in ["髙橋", "タカハシ", "宮西町", "my_number"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // Filter: a type that matches nothing so far, then the change's own.
    let uri = format!("/api/v1/tenants/{FUCHU}/events?type=jp.machi.certificate.issued.v1");
    let (s, v) = call(&h.api, "GET", &uri, None).await;
    assert_eq!(
        (s, v["events"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let uri = format!(
        "/api/v1/tenants/{FUCHU}/events?type=jp.machi.certificate.issued.v1&type=jp.machi.registry.change.*"
    );
    let (_, v) = call(&h.api, "GET", &uri, None).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    // Bad filters and waits.
    for (q, field) in [
        ("type=jp.machi.registry.change.moved.v1", "type"),
        ("type=NOT%20A%20TYPE", "type"),
        ("wait=31", "wait"),
        ("wait=x", "wait"),
    ] {
        let (s, v) = call(
            &h.api,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/events?{q}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["field"], field, "{q}");
        assert!(v["message_ja"].is_string() && v["message_en"].is_string());
    }
    // Long poll: answered when the next change commits, not at the deadline.
    let api = Api {
        router: h.api.router.clone(),
        headers: h.api.headers.clone(),
    };
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let (s, v) = call(
            &api,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/events?after={first}&wait=20"),
            None,
        )
        .await;
        (s, v, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.change().await;
    let (s, v, took) = waiter.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["events"][0]["id"], format!("{FUCHU}-{second}"));
    assert!(took < Duration::from_secs(5), "long poll took {took:?}");
    // Nothing new: the wait runs out with an empty page.
    let started = Instant::now();
    let (_, v) = call(
        &h.api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after={second}&wait=1"),
        None,
    )
    .await;
    assert!(v["events"].as_array().unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

async fn support_measure_events_carry_no_address(db: TestDb) {
    let h = hub(db, Clock::System).await;
    h.change().await;
    let filed = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let m =
        h.db.registry
            .support_register(
                &code(FUCHU),
                &crate::support_measures::request(filed),
                &crate::support_measures::officer(),
            )
            .await
            .unwrap();
    let uri = format!("/api/v1/tenants/{FUCHU}/events?type=jp.machi.support.*");
    let (s, v) = call(&h.api, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["type"], "jp.machi.support.measure.registered.v1");
    assert_eq!(e["subject"], format!("support-measures/{}", m.measure_id()));
    let data = e["data"].as_object().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    for k in &keys {
        assert!(
            [
                "measure_id",
                "status",
                "protected_persons",
                "start_date",
                "end_date"
            ]
            .contains(k),
            "unexpected key {k}"
        );
    }
    let text = e.to_string();
    for leak in ["宮西町", "府中ハイツ", "household", "090-", "offender"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

// ---------------------------------------------------------------- webhooks

async fn deliveries_are_signed_in_order_and_rotation_sends_two_signatures(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    let sub = h
        .subscribe(json!({"url": rx.url, "types": ["jp.machi.registry.change.*"]}))
        .await;
    let secret = sub["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(B64.decode(&secret[6..]).unwrap().len(), 32);
    let id = sub["subscription_id"].as_i64().unwrap();
    let _w = h.worker(fast(50, 5_000));
    let mut expected = Vec::new();
    for _ in 0..3 {
        expected.push(h.change().await);
    }
    let got = rx.wait_ok(3, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), expected);
    for r in &got {
        assert_eq!(r.id, format!("{FUCHU}-{}", r.seq));
        assert_eq!(
            r.signature,
            expected_signature(&secret, &r.id, r.timestamp, &r.body)
        );
        assert!((chrono::Utc::now().timestamp() - r.timestamp).abs() < 300);
        let ce: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(ce["id"], r.id);
        assert_eq!(ce["type"], "jp.machi.registry.change.move_in.v1");
    }
    // A tampered body does not verify.
    let r = &got[0];
    let mut body = r.body.clone();
    body[10] ^= 1;
    assert_ne!(
        r.signature,
        expected_signature(&secret, &r.id, r.timestamp, &body)
    );

    // Rotation: the new secret and the old one, space-separated.
    let (s, v) = call(
        &h.api,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/subscriptions/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_secret = v["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let fourth = h.change().await;
    let got = rx.wait_ok(4, Duration::from_secs(20)).await;
    let r = &got[3];
    assert_eq!(r.seq, fourth);
    let sigs: Vec<&str> = r.signature.split(' ').collect();
    assert_eq!(
        sigs,
        vec![
            expected_signature(&new_secret, &r.id, r.timestamp, &r.body),
            expected_signature(&secret, &r.id, r.timestamp, &r.body),
        ]
    );
    // Every attempt is on record.
    let v = h.with_attempts(id, 4).await;
    assert_eq!(v["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(v["subscription"]["position"], fourth);
}

async fn a_receiver_failing_then_recovering_gets_everything_in_order(db: TestDb) {
    // One real second is an hour.
    let h = hub(db, Clock::scaled(3_600)).await;
    let rx = Receiver::start().await;
    rx.script(&[(500, None, Duration::ZERO); 3]);
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    let mut expected = Vec::new();
    for _ in 0..3 {
        expected.push(h.change().await);
    }
    let _w = h.worker(fast(10, 5_000));
    let got = rx.wait_ok(3, Duration::from_secs(90)).await;
    assert_eq!(seqs(&got), expected, "in order, each once");
    let v = h.with_attempts(id, 6).await;
    // The first event was tried 4 times before anything else was sent.
    assert_eq!(
        seqs(&rx.all()),
        vec![
            expected[0],
            expected[0],
            expected[0],
            expected[0],
            expected[1],
            expected[2]
        ]
    );
    let a = attempts_at(&v);
    assert_eq!(
        a.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![
            Some(500),
            Some(500),
            Some(500),
            Some(200),
            Some(200),
            Some(200)
        ]
    );
    // Backoff on the registry's clock: at least 5 s, 5 min, 30 min.
    for (i, min) in [(1, 5), (2, 300), (3, 1_800)] {
        let gap = (a[i].2 - a[i - 1].2).num_seconds();
        assert!(gap >= min, "gap {i}: {gap} s < {min} s");
    }
    assert_eq!(v["subscription"]["status"], "active");
    assert_eq!(v["subscription"]["failed_attempts"], 0);
}

async fn gone_disables_the_subscription(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    rx.script(&[(410, None, Duration::ZERO)]);
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    let _w = h.worker(fast(20, 5_000));
    h.change().await;
    let v = h.wait_status(id, "disabled", Duration::from_secs(20)).await;
    assert_eq!(v["subscription"]["status"], "disabled");
    assert_eq!(v["subscription"]["pause_reason"], "receiver_gone", "{v}");
    h.change().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.all().len(), 1, "nothing sent after 410");
    let alerts = h.db.registry.hook_alerts(&code(FUCHU)).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, "disabled");
}

async fn retry_after_is_honoured(db: TestDb) {
    let h = hub(db, Clock::scaled(3_600)).await;
    let rx = Receiver::start().await;
    // 429 asks for an hour (the schedule alone would wait 5 s).
    rx.script(&[(429, Some("3600"), Duration::ZERO)]);
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    let _w = h.worker(fast(10, 5_000));
    h.change().await;
    let got = rx.wait_ok(1, Duration::from_secs(90)).await;
    assert_eq!(got.len(), 1);
    let a = attempts_at(&h.with_attempts(id, 2).await);
    assert_eq!(
        a.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![Some(429), Some(200)]
    );
    let gap = (a[1].2 - a[0].2).num_seconds();
    assert!(gap >= 3_600, "retried after {gap} s, before Retry-After");
}

async fn failing_for_72_hours_pauses_then_replay_delivers_everything(db: TestDb) {
    // One real second is 50,000 s: the whole schedule (≈75 h) in ≈6 s.
    let h = hub(db, Clock::scaled(50_000)).await;
    let rx = Receiver::start().await;
    rx.otherwise(Some(503));
    let sub = h.subscribe(json!({"url": rx.url, "after": 0})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    let first = h.change().await;
    let second = h.change().await;
    let _w = h.worker(fast(10, 5_000));
    let v = h.wait_status(id, "paused", Duration::from_secs(40)).await;
    assert_eq!(v["subscription"]["status"], "paused", "{v}");
    assert_eq!(v["subscription"]["pause_reason"], "receiver_failing", "{v}");
    let a = attempts_at(&v);
    assert!(
        a.iter().all(|x| x.0 == first),
        "never skipped to a later event"
    );
    let span = (a[a.len() - 1].2 - a[0].2).num_hours();
    assert!(span >= 72, "paused after {span} h of retries");
    assert!(a.len() >= 10);
    // The administrator's page shows it, and /metrics counts it.
    let alerts = h.db.registry.hook_alerts(&code(FUCHU)).await.unwrap();
    assert_eq!(alerts[0].status, "paused");
    let m = metrics(&h).await;
    assert_eq!(
        figure(&m, "machi_webhook_subscriptions{status=\"paused\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        figure(&m, "machi_webhook_subscriptions{status=\"active\"}"),
        0.0,
        "{m}"
    );
    // Process-wide counters (other tests run beside): at least ours.
    let failures_before = figure(&m, "machi_webhook_delivery_failures_total");
    assert!(failures_before >= a.len() as f64, "{m}");
    let delivered_before = figure(&m, "machi_webhook_deliveries_total");
    let lag_before = figure(&m, "machi_webhook_delivery_lag_seconds_count");
    // Paused: nothing more is sent.
    let sent = rx.all().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.all().len(), sent);
    // The receiver is back; replay from the first event delivers all, in order.
    rx.otherwise(None);
    h.replay(id, first).await;
    let got = rx.wait_ok(2, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, second]);
    let m = metrics(&h).await;
    assert!(
        figure(&m, "machi_webhook_deliveries_total") >= delivered_before + 2.0,
        "{m}"
    );
    assert!(
        figure(&m, "machi_webhook_delivery_lag_seconds_count") >= lag_before + 2.0,
        "{m}"
    );
    assert_eq!(
        figure(&m, "machi_webhook_subscriptions{status=\"paused\"}"),
        0.0,
        "{m}"
    );
    // Replay again from the second: sent once more, same webhook-id.
    h.replay(id, second).await;
    let got = rx.wait_ok(3, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, second, second]);
    assert_eq!(got[1].id, got[2].id);
}

async fn a_worker_restart_mid_delivery_loses_nothing(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    // The first request hangs: the worker is stopped while it is in flight.
    rx.script(&[(200, None, Duration::from_secs(3))]);
    let _sub = h.subscribe(json!({"url": rx.url})).await;
    let mut expected = Vec::new();
    for _ in 0..5 {
        expected.push(h.change().await);
    }
    let w1 = h.worker(fast(20, 800));
    let start = Instant::now();
    while rx.all().is_empty() && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rx.all().len(), 1, "first request in flight");
    drop(w1);
    // A new worker on the same database takes over once the lease ends.
    let _w2 = h.worker(fast(20, 800));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen: Vec<i64> = rx.ok().iter().map(|r| r.seq).collect();
        seen.dedup();
        if seen == expected || Instant::now() > deadline {
            assert_eq!(seen, expected, "every event, in order (the cut one again)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_workers_deliver_each_event_once(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    let _sub = h.subscribe(json!({"url": rx.url})).await;
    let w1 = h.worker(fast(5, 10_000));
    let w2 = h.worker(fast(5, 10_000));
    let mut expected = Vec::new();
    for _ in 0..20 {
        expected.push(h.change().await);
    }
    let got = rx.wait_ok(20, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in rx.all() {
        *by_id.entry(r.id).or_default() += 1;
    }
    assert_eq!(by_id.len(), 20);
    assert!(by_id.values().all(|n| *n == 1), "{by_id:?}");
    assert_eq!(seqs(&got), expected);
    drop((w1, w2));
}

/// A caught-up subscription stays with its worker, waiting for the next
/// commit instead of parking (`linger`); a pause takes it back at once:
/// the next change is not sent while paused, and after the resume it is
/// sent once, in order.
async fn a_pause_stops_a_subscription_kept_while_caught_up(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    // Kept for up to 4 s after catching up: longer than this test waits.
    let _w = h.worker(WorkerConfig {
        linger: Duration::from_secs(4),
        ..fast(50, 15_000)
    });
    let first = h.change().await;
    rx.wait_ok(1, Duration::from_secs(20)).await;
    let second = h.change().await;
    let got = rx.wait_ok(2, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, second]);
    // Both on record (with the position) before the pause.
    let v = h.with_attempts(id, 2).await;
    assert_eq!(v["subscription"]["position"], second, "{v}");
    let (t, admin) = (code(FUCHU), Actor::system("admin"));
    h.db.registry
        .pause_subscription(&t, None, id, &admin)
        .await
        .unwrap();
    let third = h.change().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.all().len(), 2, "paused: nothing sent");
    h.db.registry
        .resume_subscription(&t, None, id, &admin)
        .await
        .unwrap();
    let got = rx.wait_ok(3, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, second, third]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.all().len(), 3, "each once");
}

async fn bad_subscriptions_are_refused_in_both_languages(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let path = format!("/api/v1/tenants/{FUCHU}/subscriptions");
    for (body, field) in [
        (json!({"url": "http://example.org/hook"}), "url"),
        (json!({"url": "https://10.1.2.3/hook"}), "url"),
        (json!({"url": "https://192.168.0.1/hook"}), "url"),
        (json!({"url": "https://user:pw@example.org/hook"}), "url"),
        (json!({"url": "ftp://example.org/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://example.org/h", "types": ["jp.machi.nothing.v1"]}),
            "types",
        ),
        (
            json!({"url": "https://example.org/h", "types": ["a*b"]}),
            "types",
        ),
        (
            json!({"url": "https://example.org/h", "after": -1}),
            "after",
        ),
    ] {
        let (s, v) = call(&h.api, "POST", &path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}");
        assert!(!v["message_ja"].as_str().unwrap().is_empty());
        assert!(!v["message_en"].as_str().unwrap().is_empty());
    }
    // Without the local allowance, plain HTTP to 127.0.0.1 is refused too.
    let strict = h.db.registry.clone();
    let e = strict
        .create_subscription(
            &code(FUCHU),
            "c",
            machi::service::hooks::NewSubscription {
                url: "http://127.0.0.1:9/hook".into(),
                types: vec![],
                after: None,
            },
            &Actor::system("t"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("url"), "{e}");
    // A host NAME that resolves to a local address is refused like the
    // address itself (a name from this machine's /etc/hosts, no network).
    let name = local_host_name();
    let strict = |p: HookPolicy| h.db.registry.clone().with_hook_policy(p);
    let refuse = |p: HookPolicy, url: String| {
        let r = strict(p);
        async move {
            r.create_subscription(
                &code(FUCHU),
                "c",
                machi::service::hooks::NewSubscription {
                    url,
                    types: vec![],
                    after: None,
                },
                &Actor::system("t"),
            )
            .await
        }
    };
    let on = HookPolicy {
        require_resolvable: true,
        ..HookPolicy::default()
    };
    let e = refuse(on, format!("https://{name}:8443/hook"))
        .await
        .unwrap_err();
    let machi::service::ServiceError::Invalid {
        code,
        message_ja,
        message_en,
        ..
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(*code, "callback_private_address");
    assert!(message_ja.contains("内部ネットワーク"), "{message_ja}");
    assert!(message_en.contains("resolves to a private"), "{message_en}");
    // Allowed by configuration: accepted.
    let allowed = HookPolicy {
        allow_private: true,
        ..on
    };
    refuse(allowed, format!("https://{name}:8443/hook"))
        .await
        .expect("private allowed");
    // A name that cannot resolve (RFC 6761 .invalid): unreachable.
    let e = refuse(on, "https://no-such-host.invalid/hook".into())
        .await
        .unwrap_err();
    let machi::service::ServiceError::Invalid {
        code, message_ja, ..
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(*code, "callback_unreachable");
    assert!(message_ja.contains("到達できません"), "{message_ja}");
    // The delivery worker's resolver drops the local addresses too.
    use machi::service::hooks::PublicOnlyResolver;
    use reqwest::dns::Resolve;
    let r = PublicOnlyResolver(on).resolve(name.parse().unwrap()).await;
    assert!(r.is_err(), "a local address is not called");
    let kept: Vec<_> = PublicOnlyResolver(allowed)
        .resolve(name.parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert!(!kept.is_empty());
    // Nothing was created.
    let (s, v) = call(&h.api, "GET", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["subscriptions"].as_array().unwrap().is_empty());
    // A valid one works; another client's or an unknown id is 404.
    let sub = h
        .subscribe(json!({"url": "https://example.org/hook"}))
        .await;
    assert!(sub["secret"].is_string());
    let (s, _) = call(&h.api, "DELETE", &format!("{path}/999"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let id = sub["subscription_id"].as_i64().unwrap();
    let (s, _) = call(&h.api, "DELETE", &format!("{path}/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = call(&h.api, "GET", &path, None).await;
    assert!(v["subscriptions"].as_array().unwrap().is_empty());
}

// ---------------------------------------------------------------- two servers

/// A long poll of the feed on server B, from `after`, waiting up to 20 s:
/// the sequences it returned and how long it took.
async fn long_poll(api: &Api, after: i64) -> (Vec<i64>, Duration) {
    let start = Instant::now();
    let uri = format!("/api/v1/tenants/{FUCHU}/events?after={after}&wait=20");
    let (s, v) = call(api, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let seqs = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
        .collect();
    (seqs, start.elapsed())
}

/// Two servers on one database (two stores, as two `machi serve` would
/// have): a change committed through A reaches a long poll and a caught-up
/// webhook subscription waiting on B. PostgreSQL: at once, through
/// LISTEN/NOTIFY, although B's fallback polls are a minute long (a long
/// poll of 20 s would otherwise answer empty), also after B's listening
/// connection was killed (it reconnects). SQLite keeps one process per
/// database file and no such channel: B finds A's commits by its poll
/// (2 s here), which this checks too.
async fn another_servers_commit_wakes_the_long_poll_and_the_worker(db: TestDb) {
    use machi::store::{Backend, SqliteSync, Store};
    let h = hub(db, Clock::System).await;
    let pg = h.db.store.backend() == Backend::Postgres;
    let poll = if pg {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(2)
    };
    // Within this the event must arrive: on PostgreSQL far below the poll.
    let soon = if pg {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(8)
    };
    let store_b = Store::connect_with(
        &h.db.location().await,
        SqliteSync::Normal,
        crate::support::test_keyring(),
    )
    .await
    .unwrap();
    let policy = h.worker_registry.hook_policy();
    let registry_b = Registry::new(store_b.clone(), EraTable::standard(), Clock::System)
        .with_hook_policy(policy)
        .with_feed_poll(poll);
    let api_b = Api {
        router: api::app(AppState {
            registry: registry_b.clone(),
        }),
        headers: h.api.headers.clone(),
    };
    let first = h.change().await;

    // The feed on B, waiting; the change committed on A.
    let waiting = tokio::spawn({
        let api_b = Api {
            router: api_b.router.clone(),
            headers: api_b.headers.clone(),
        };
        async move { long_poll(&api_b, first).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = h.change().await;
    let (got, took) = waiting.await.unwrap();
    assert_eq!(got, vec![second]);
    assert!(took < soon, "the long poll on B answered after {took:?}");

    if pg {
        // B's listening connection ended by the server: it reconnects, and
        // the next change wakes B as fast again.
        let url = h.db.url().unwrap();
        let listeners = move |kill: bool| {
            let url = url.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
                    let sql = if kill {
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = $1"
                    } else {
                        "SELECT pid FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = $1"
                    };
                    c.query(sql, &[&machi::store::listen::APPLICATION_NAME])
                        .unwrap()
                        .len()
                })
                .await
                .unwrap()
            }
        };
        assert_eq!(listeners(false).await, 2, "one listener per store");
        assert_eq!(listeners(true).await, 2);
        let start = Instant::now();
        while listeners(false).await < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the listeners did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let waiting = tokio::spawn({
            let api_b = Api {
                router: api_b.router.clone(),
                headers: api_b.headers.clone(),
            };
            async move { long_poll(&api_b, second).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let third = h.change().await;
        let (got, took) = waiting.await.unwrap();
        assert_eq!(got, vec![third]);
        assert!(took < soon, "after the reconnect B answered after {took:?}");
    }

    // A webhook subscription served by B's worker, caught up and parked
    // (no linger), gets A's next change.
    let rx = Receiver::start().await;
    let last = h.change().await;
    h.subscribe(json!({"url": rx.url, "after": last})).await;
    let _w = spawn_worker(
        registry_b.clone(),
        WorkerConfig {
            linger: Duration::ZERO,
            ..fast(poll.as_millis() as u64, 120_000)
        },
    )
    .unwrap();
    // Its first scan finds it caught up and parks it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rx.all().is_empty());
    let start = Instant::now();
    let next = h.change().await;
    let got = rx.wait_ok(1, Duration::from_secs(30)).await;
    assert_eq!(seqs(&got), vec![next]);
    assert!(
        start.elapsed() < soon,
        "B's worker delivered after {:?}",
        start.elapsed()
    );
}

/// Zero loss: a subscription (or a feed cursor) starting after an event
/// that does not exist yet would never see the events up to it; it is
/// refused in both languages, as a replay from such an event is.
async fn a_start_past_the_latest_event_is_refused_on_create_and_on_the_feed(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let last = h.change().await;
    assert!(last >= 1);
    let path = format!("/api/v1/tenants/{FUCHU}/subscriptions");
    let far = last + 99_999;
    let (s, v) = call(
        &h.api,
        "POST",
        &path,
        Some(json!({"url": "http://127.0.0.1:9/hook", "after": far})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "after", "{v}");
    assert_eq!(v["code"], "invalid_after", "{v}");
    let ja = v["message_ja"].as_str().unwrap();
    assert!(
        ja.contains(&format!(
            "第{far}号の連携イベントはまだありません（最新は第{last}号です）"
        )),
        "{ja}"
    );
    assert!(
        v["message_en"]
            .as_str()
            .unwrap()
            .contains(&format!("the latest is {last}")),
        "{v}"
    );
    // Nothing was created.
    let (s, v) = call(&h.api, "GET", &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 0, "{v}");
    // The latest event itself is a valid start (only new events).
    let sub = h
        .subscribe(json!({"url": "http://127.0.0.1:9/hook", "after": last}))
        .await;
    assert_eq!(sub["position"], last, "{sub}");
    // The pull feed: a cursor past the latest event is refused too; at the
    // latest, it answers an empty page.
    let feed = format!("/api/v1/tenants/{FUCHU}/events?after={far}");
    let (s, v) = call(&h.api, "GET", &feed, None).await;
    // 409: well-formed, refused by the state (the schema's contract keeps
    // 400 for values it does not allow).
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["field"], "after", "{v}");
    assert_eq!(v["code"], "invalid_after", "{v}");
    let feed = format!("/api/v1/tenants/{FUCHU}/events?after={last}");
    let (s, v) = call(&h.api, "GET", &feed, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["next_after"], last, "{v}");
}

/// A `prefix.*` filter is stored as the pattern, not as the types it
/// matches on the day of the subscription: a type published later under
/// the prefix is delivered (and read from the feed) too. A subscription
/// listing type names (as rows from before did) keeps matching exactly.
async fn a_prefix_pattern_is_kept_and_takes_types_added_later(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    let sub = h
        .subscribe(json!({"url": rx.url, "types": ["jp.machi.registry.*"], "after": 0}))
        .await;
    assert_eq!(sub["types"], json!(["jp.machi.registry.*"]), "{sub}");
    let named = Receiver::start().await;
    let listed = h
        .subscribe(json!({"url": named.url,
            "types": ["jp.machi.registry.change.move_in.v1"], "after": 0}))
        .await;
    assert_eq!(
        listed["types"],
        json!(["jp.machi.registry.change.move_in.v1"])
    );
    let first = h.change().await;
    // Two events of types machi does not publish yet: one under the
    // prefix, one outside it (written as a later version would).
    let now = chrono::Utc::now().timestamp_micros();
    let (later, other) = (first + 1, first + 2);
    h.db.raw(&format!(
        "INSERT INTO outbox (tenant, seq, event_id, kind, change_id, payload, created_at) VALUES \
         ('{FUCHU}', {later}, '{FUCHU}-{later}', 'jp.machi.registry.later_kind.v1', NULL, '{{\"persons\": []}}', {now}), \
         ('{FUCHU}', {other}, '{FUCHU}-{other}', 'jp.machi.elsewhere.v1', NULL, '{{\"persons\": []}}', {now}); \
         UPDATE tenant_heads SET event_seq = {other} WHERE tenant = '{FUCHU}';"
    ))
    .await;
    let last = h.change().await;
    assert_eq!(last, other + 1);
    let _w = h.worker(fast(50, 5_000));
    let got = rx.wait_ok(3, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, later, last]);
    let got = named.wait_ok(2, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, last]);
    // Nothing more arrives (the event outside the prefix is not sent).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.ok().len(), 3);
    assert_eq!(named.ok().len(), 2);
    // The pull feed filters the same way.
    let (s, v) = call(
        &h.api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after=0&type=jp.machi.registry.*"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let seen: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seen, vec![first, later, last], "{v}");
}

/// A client pauses and resumes its own subscription through the API:
/// nothing is sent while paused, the view says why (`pause_reason`) and
/// since when; resume delivers from the first event not yet delivered; a
/// pause of a paused subscription or a resume of an active one is 409
/// with a typed reason in Japanese and English, nothing changed; another
/// client's subscription is 404; each step is in the access log under the
/// client.
async fn a_client_pauses_and_resumes_its_subscription_through_the_api(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let rx = Receiver::start().await;
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    assert!(sub.get("pause_reason").is_none(), "{sub}");
    let _w = h.worker(fast(20, 5_000));
    let first = h.change().await;
    rx.wait_ok(1, Duration::from_secs(20)).await;
    h.with_attempts(id, 1).await;
    let at = |what: &str| format!("/api/v1/tenants/{FUCHU}/subscriptions/{id}/{what}");
    let (s, v) = call(&h.api, "POST", &at("pause"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "paused", "{v}");
    assert_eq!(v["pause_reason"], "paused_by_request", "{v}");
    assert!(
        v["paused_at"].as_str().is_some_and(|t| t.contains('T')),
        "{v}"
    );
    // The view says it too.
    let v = h.subscription(id).await;
    assert_eq!(v["subscription"]["pause_reason"], "paused_by_request");
    // Paused: the next change is not sent.
    let second = h.change().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.all().len(), 1, "paused: nothing sent");
    // Pausing again: 409, typed, both languages.
    let (s, v) = call(&h.api, "POST", &at("pause"), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "subscription_not_active", "{v}");
    assert!(
        v["message_ja"]
            .as_str()
            .unwrap()
            .contains("一時停止できません"),
        "{v}"
    );
    assert!(
        v["message_en"].as_str().unwrap().contains("not active"),
        "{v}"
    );
    let (s, v) = call(&h.api, "POST", &at("resume"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active", "{v}");
    assert!(v.get("pause_reason").is_none(), "{v}");
    let got = rx.wait_ok(2, Duration::from_secs(20)).await;
    assert_eq!(seqs(&got), vec![first, second]);
    // Resuming an active subscription: 409.
    h.with_attempts(id, 2).await;
    let (s, v) = call(&h.api, "POST", &at("resume"), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "subscription_not_paused", "{v}");
    assert!(
        v["message_ja"]
            .as_str()
            .unwrap()
            .contains("再開するものはありません"),
        "{v}"
    );
    assert!(!v["message_en"].as_str().unwrap().is_empty());
    // No such subscription, or another client's: 404.
    let other = h
        .worker_registry
        .create_subscription(
            &code(FUCHU),
            "someone-else",
            machi::service::hooks::NewSubscription {
                url: rx.url.clone(),
                types: vec![],
                after: None,
            },
            &Actor::system("setup"),
        )
        .await
        .unwrap()
        .subscription_id;
    for bad in [other, 999] {
        for what in ["pause", "resume"] {
            let (s, v) = call(
                &h.api,
                "POST",
                &format!("/api/v1/tenants/{FUCHU}/subscriptions/{bad}/{what}"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{bad} {what}: {v}");
            assert_eq!(v["code"], "subscription_not_found");
        }
    }
    // In the access log, under the client, with the subscription.
    let t = code(FUCHU);
    let tenant = t.clone();
    let logged: Vec<(String, String, String)> =
        h.db.store
            .read(Some(&tenant), move |tx| {
                machi::store::oversight::search_audit(
                    tx,
                    &t,
                    &machi::store::oversight::AuditFilter {
                        function: Some("webhook.".into()),
                        ..Default::default()
                    },
                    100,
                )
            })
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| (e.entry.function, e.entry.operator, e.entry.target))
            .collect();
    let client = format!("client:{}", sub["client_id"].as_str().unwrap());
    let mine: Vec<&str> = logged
        .iter()
        .filter(|(_, op, target)| *op == client && *target == format!("webhook_subscriptions/{id}"))
        .map(|(f, _, _)| f.as_str())
        .collect();
    assert_eq!(
        mine,
        vec!["webhook.subscribe", "webhook.pause", "webhook.resume"],
        "{logged:?}"
    );
}

/// Every subscription gets the same bytes for an event, those the pull
/// feed gives; and an event delivered in full before a support measure
/// began is withheld (j440) when a subscription reads it again afterwards
/// (a replay): the shield applies at each read, as on the feed.
async fn every_subscription_gets_the_feeds_bytes_and_a_replay_is_withheld_once_a_measure_begins(
    db: TestDb,
) {
    let h = hub(db, Clock::System).await;
    let (rx1, rx2) = (Receiver::start().await, Receiver::start().await);
    h.subscribe(json!({"url": rx1.url})).await;
    let sub2 = h.subscribe(json!({"url": rx2.url})).await;
    let id2 = sub2["subscription_id"].as_i64().unwrap();
    let _w = h.worker(fast(50, 5_000));
    let first = h.change().await;
    let (got1, got2) = (
        rx1.wait_ok(1, Duration::from_secs(20)).await,
        rx2.wait_ok(1, Duration::from_secs(20)).await,
    );
    assert_eq!((got1[0].seq, got2[0].seq), (first, first));
    assert_eq!(got1[0].body, got2[0].body, "the same bytes to each");
    let sent: Value = serde_json::from_slice(&got1[0].body).unwrap();
    let (s, feed) = call(
        &h.api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after={}", first - 1),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{feed}");
    assert_eq!(sent, feed["events"][0], "the body is the feed's event");
    assert!(
        sent["data"]["persons"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );

    // A measure protects persons of that change; its own event follows.
    let filed = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    h.db.registry
        .support_register(
            &code(FUCHU),
            &crate::support_measures::request(filed),
            &crate::support_measures::officer(),
        )
        .await
        .unwrap();
    rx2.wait_ok(2, Duration::from_secs(20)).await;
    // Replayed: the held event is read again, under the shield now.
    h.replay(id2, first).await;
    let got2 = rx2.wait_ok(3, Duration::from_secs(20)).await;
    assert_eq!(got2[2].seq, first);
    let again: Value = serde_json::from_slice(&got2[2].body).unwrap();
    assert_eq!(again["id"], sent["id"]);
    assert_eq!(again["data"]["withheld"], "support_measure", "{again}");
    assert!(again["data"].get("persons").is_none(), "{again}");
    let (_, feed) = call(
        &h.api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after={}", first - 1),
        None,
    )
    .await;
    assert_eq!(
        again, feed["events"][0],
        "withheld as the feed withholds it"
    );
}

/// Four subscriptions at the same position read each chunk once between
/// them (the worker's shared reads) and send what each would have read
/// alone: the same events, in order, the
/// same bytes. Without sharing (`shared_reads: false`, the A/B switch)
/// every subscription reads every chunk and settles each chunk itself.
async fn subscriptions_at_one_position_share_one_read_and_send_the_same_bytes(db: TestDb) {
    let h = hub(db, Clock::System).await;
    let mut rx = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = Receiver::start().await;
        let v = h.subscribe(json!({"url": r.url})).await;
        ids.push(v["subscription_id"].as_i64().unwrap());
        rx.push(r);
    }
    // A backlog of more than two chunks (50 events each), committed
    // before any worker runs.
    let mut first = 0;
    let mut last = 0;
    for i in 0..60 {
        last = h.change().await;
        if i == 0 {
            first = last;
        }
    }
    let n = (last - first + 1) as usize;
    assert!(n >= 60, "{n} events");
    let chunks = n.div_ceil(machi::service::hooks::CHUNK) as u64;
    let shared = WorkerConfig {
        shared_reads: true,
        ..fast(50, 5_000)
    };
    let w = h.worker(shared);
    let mut sent = Vec::new();
    for r in &rx {
        let got = r.wait_ok(n, Duration::from_secs(60)).await;
        let seqs: Vec<i64> = got.iter().map(|g| g.seq).collect();
        assert_eq!(
            seqs,
            (first..=last).collect::<Vec<_>>(),
            "in order, once each"
        );
        sent.push(got);
    }
    let shared_reads = w.reads();
    let (settles, settle_transactions) = w.settles();
    drop(w);
    // Grouped only when settles overlap (timing): at most one each.
    assert!(settle_transactions <= settles);
    for got in &sent[1..] {
        for (a, b) in got.iter().zip(&sent[0]) {
            assert_eq!(a.body, b.body, "the same bytes to each");
            assert_eq!(a.id, b.id);
        }
    }
    assert!(
        shared_reads < 4 * chunks,
        "{shared_reads} reads for 4 subscriptions × {chunks} chunks: none shared"
    );

    // Each alone: replayed from the first event by a worker that does not
    // share its reads.
    for (r, id) in rx.iter().zip(&ids) {
        r.inbox.lock().unwrap().ok.clear();
        h.replay(*id, first).await;
    }
    let alone = h.worker(WorkerConfig {
        shared_reads: false,
        ..fast(50, 5_000)
    });
    for (r, before) in rx.iter().zip(&sent) {
        let got = r.wait_ok(n, Duration::from_secs(60)).await;
        assert_eq!(got.len(), before.len());
        for (a, b) in got.iter().zip(before) {
            assert_eq!((a.seq, &a.body), (b.seq, &b.body), "read alone, sent alike");
        }
    }
    assert!(
        alone.reads() >= 4 * chunks,
        "{} reads alone for 4 × {chunks} chunks",
        alone.reads()
    );
    let (settles, transactions) = alone.settles();
    assert_eq!(settles, transactions, "alone: a transaction per settle");
}

/// A receiver that takes the request and never answers (in time): the
/// attempt ends at the request's time limit, is recorded with no status
/// and the reason, and the event is sent again by the retry schedule,
/// before the next one; nothing is lost or reordered.
async fn a_receiver_that_takes_the_request_and_never_answers_is_timed_out_and_retried(db: TestDb) {
    // One real second is an hour: the 5-second retry comes at once.
    let h = hub(db, Clock::scaled(3_600)).await;
    let rx = Receiver::start().await;
    rx.script(&[(200, None, Duration::from_secs(60))]);
    let sub = h.subscribe(json!({"url": rx.url})).await;
    let id = sub["subscription_id"].as_i64().unwrap();
    let expected = vec![h.change().await, h.change().await];
    let _w = h.worker(WorkerConfig {
        request_timeout: Duration::from_millis(500),
        ..fast(10, 5_000)
    });
    let got = rx.wait_ok(2, Duration::from_secs(60)).await;
    assert_eq!(seqs(&got), expected, "in order, each once accepted");
    assert_eq!(
        seqs(&rx.all()),
        vec![expected[0], expected[0], expected[1]],
        "the unanswered event again before the next"
    );
    let v = h.with_attempts(id, 3).await;
    let a = attempts_at(&v);
    assert_eq!(
        a.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        vec![
            (expected[0], None),
            (expected[0], Some(200)),
            (expected[1], Some(200))
        ]
    );
    let first = v["attempts"].as_array().unwrap().last().unwrap();
    assert!(
        first["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the reason is recorded: {first}"
    );
    assert_eq!(v["subscription"]["status"], "active");
    assert_eq!(v["subscription"]["failed_attempts"], 0);
}

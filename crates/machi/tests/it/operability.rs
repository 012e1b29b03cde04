//! Operability: `/metrics` (route templates, never paths; pool and queue
//! gauges; no personal data), `/readyz` against a live and a lost database,
//! `/healthz` without the database, the metrics token, JSON log lines from
//! the built binary. Each on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use machi::api::{self, AppOptions, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{Api, call, client_token};
use crate::contract::takahashi_family;
use crate::support::{FUCHU, TEST_MASTER_KEY, TestDb, postgres_server};

both_backends!(
    metrics_count_route_templates_and_hold_no_personal_data,
    readyz_follows_the_database_and_healthz_does_not,
    metrics_ask_for_the_token_when_one_is_set,
    json_logs_are_one_json_object_a_line,
);

/// One sample of an exposition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// The parsed exposition: samples, each family's type, and the text
/// without the sample values (everything a label or a name could carry).
pub(crate) struct Exposition {
    pub(crate) samples: Vec<Sample>,
    pub(crate) types: BTreeMap<String, String>,
    pub(crate) names_and_labels: String,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{a="x",b="y"}` → labels; strict about quoting and escapes.
fn parse_labels(s: &str, line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(is_metric_name(key), "bad label name {key:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "label {key} twice in {line:?}"
        );
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else {
            assert!(rest.is_empty(), "junk after a label in {line:?}");
        }
    }
    out
}

/// A strict reading of the OpenMetrics text format (what Prometheus
/// scrapes): HELP/TYPE/UNIT lines before their family's samples, sample
/// names that belong to the family declared for them, numeric values,
/// cumulative histogram buckets ending in `+Inf` equal to `_count`, and
/// `# EOF` as the last line.
pub(crate) fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end: {text}");
    let body = &text[..text.len() - "# EOF\n".len()];
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    let mut names_and_labels = String::new();
    let mut family: Option<(String, String)> = None;
    for line in body.lines() {
        assert!(!line.is_empty(), "empty line in the exposition");
        if let Some(meta) = line.strip_prefix("# ") {
            names_and_labels.push_str(line);
            names_and_labels.push('\n');
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (
                parts.next().unwrap(),
                parts.next().expect("a metric name"),
                parts.next().expect("a value"),
            );
            assert!(is_metric_name(name), "bad metric name in {line:?}");
            match kind {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram"].contains(&rest),
                        "unexpected type in {line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), rest.to_string()).is_none(),
                        "family {name} declared twice"
                    );
                    family = Some((name.to_string(), rest.to_string()));
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        names_and_labels.push_str(series);
        names_and_labels.push('\n');
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value not a number in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                parse_labels(
                    l.strip_suffix('}')
                        .unwrap_or_else(|| panic!("no closing brace in {line:?}")),
                    line,
                ),
            ),
            None => (series, BTreeMap::new()),
        };
        assert!(is_metric_name(name), "bad sample name in {line:?}");
        let (fname, ftype) = family
            .as_ref()
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let suffixes: &[&str] = match ftype.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count", "_created"],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{fname}{s}")),
            "sample {name} outside its family {fname} ({ftype})"
        );
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket without le: {line:?}");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histograms: buckets cumulative, +Inf equal to the count.
    for (fname, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{fname}_bucket"))
        {
            let mut key = s.labels.clone();
            let le = key.remove("le").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{fname} {key:?}: buckets not cumulative"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{fname} {key:?}: no +Inf bucket");
            let count = samples
                .iter()
                .find(|s| s.name == format!("{fname}_count") && s.labels == key)
                .unwrap_or_else(|| panic!("{fname} {key:?}: no _count"));
            assert_eq!(last.1, count.value, "{fname} {key:?}: +Inf bucket != count");
        }
    }
    Exposition {
        samples,
        types,
        names_and_labels,
    }
}

/// The label names a webhook subscription's series may carry, and the
/// outcomes it may name.
const SUBSCRIPTION_LABELS: [&str; 4] = ["tenant", "subscription", "outcome", "le"];

impl Exposition {
    /// Fails if any name or label holds one of `personal`, or a query
    /// string or a URL. The one exception: a webhook subscription's series
    /// (`machi_webhook_subscription_*`) name their tenant's 団体コード (a
    /// public number, not a person) in a `tenant` label, beside the
    /// subscription's number and an outcome word, and nothing else; the
    /// 団体コード is looked for everywhere else as before.
    pub(crate) fn assert_no_personal_data(&self, personal: &[String], text: &str) {
        let outcomes = machi::service::hooks::OUTCOMES;
        let mut exposed = String::new();
        for line in self.names_and_labels.lines() {
            if line.starts_with("machi_webhook_subscription_") {
                let Some((name, labels)) = line.split_once('{') else {
                    exposed.push_str(line);
                    exposed.push('\n');
                    continue;
                };
                let labels = parse_labels(labels.strip_suffix('}').unwrap(), line);
                for (k, v) in &labels {
                    assert!(
                        SUBSCRIPTION_LABELS.contains(&k.as_str()),
                        "label {k} on {line:?}"
                    );
                    let ok = match k.as_str() {
                        "tenant" => v.len() == 6 && v.chars().all(|c| c.is_ascii_digit()),
                        "subscription" => !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()),
                        "outcome" => outcomes.contains(&v.as_str()),
                        _ => true,
                    };
                    assert!(ok, "{k}={v:?} on {line:?}");
                }
                // The tenant code is allowed here only; the rest is looked at.
                exposed.push_str(name);
                for (k, v) in labels.iter().filter(|(k, _)| *k != "tenant") {
                    exposed.push_str(&format!(" {k}={v}"));
                }
                exposed.push('\n');
            } else {
                exposed.push_str(line);
                exposed.push('\n');
            }
        }
        for p in personal {
            // Codes of the request format (`move_in`, `male`) are not personal.
            if p.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            assert!(
                !exposed.contains(p.as_str()),
                "/metrics shows {p:?}:\n{text}"
            );
        }
        for bad in ["?", "://", "127.0.0.1", "/hook"] {
            assert!(!exposed.contains(bad), "/metrics shows {bad:?}:\n{text}");
        }
    }

    /// The value of the sample `name` with exactly these labels.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

async fn scrape(router: &axum::Router, auth: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get("/metrics");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

const REQUESTS: &str = "machi_http_requests_total";
const LATENCY_COUNT: &str = "machi_http_request_duration_seconds_count";
const RESIDENT_ROUTE: &str = "/api/v1/tenants/{municipality_code}/residents/{addressee_number}";
const CHANGES_ROUTE: &str = "/api/v1/tenants/{municipality_code}/changes";

async fn metrics_count_route_templates_and_hold_no_personal_data(db: TestDb) {
    let db = db.with_tenants().await;
    // Webhooks to the local receiver below (plain HTTP to 127.0.0.1).
    let registry = db
        .registry
        .clone()
        .with_hook_policy(machi::service::hooks::HookPolicy {
            allow_insecure_local: true,
            allow_private: false,
            require_resolvable: false,
        });
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    let token = client_token(&db, &router, FUCHU).await;
    let app = Api {
        router: router.clone(),
        headers: vec![("authorization".into(), token)],
    };
    let (s, ctype, text) = scrape(&router, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let before = parse_exposition(&text);
    let resident_reads_before = before
        .value(
            LATENCY_COUNT,
            &[("method", "GET"), ("route", RESIDENT_ROUTE)],
        )
        .unwrap_or(0.0);
    assert_eq!(
        before.value(
            REQUESTS,
            &[
                ("method", "POST"),
                ("route", CHANGES_ROUTE),
                ("status", "201")
            ]
        ),
        None
    );

    // Calls whose paths, queries and bodies hold personal data.
    let body = takahashi_family();
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut personal = Vec::new();
    strings(&body, &mut personal);
    let persons: Vec<String> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["addressee_number"].as_str().unwrap().to_string())
        .collect();
    let household = v["rows"][0]["household_number"]
        .as_str()
        .unwrap()
        .to_string();
    // A webhook subscription from the first event on, delivered by a worker.
    let receiver = plain_receiver(&persons[0]).await;
    let (s, subscription) = call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/subscriptions"),
        Some(json!({
            "url": format!("http://127.0.0.1:{}{}/%E9%AB%98%E6%A9%8B", receiver.port, receiver.path),
            "after": 0
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{subscription}");
    let worker = machi::service::hooks::spawn_worker(
        registry.clone(),
        machi::service::hooks::WorkerConfig {
            poll: std::time::Duration::from_millis(20),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while receiver.got.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no delivery");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The attempt is counted once the worker has settled it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, _, text) = scrape(&router, None).await;
        let sub_id = subscription["subscription_id"]
            .as_i64()
            .unwrap()
            .to_string();
        let delivered = parse_exposition(&text).value(
            "machi_webhook_subscription_attempts_total",
            &[
                ("tenant", FUCHU),
                ("subscription", &sub_id),
                ("outcome", "delivered"),
            ],
        );
        if delivered.is_some() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(worker);
    for a in &persons {
        let (s, v) = call(
            &app,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/residents/{a}?as_of=令和6年4月1日"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, _) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/households/{household}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/search?name=%E9%AB%98%E6%A9%8B"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // No such person: the route still matched, answered 404.
    let (s, _) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/residents/0000099990"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // No route at all, with personal data in the path.
    let (s, _) = call(
        &app,
        "GET",
        &format!("/people/{}/%E9%AB%98%E6%A9%8B", persons[0]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A UI page without a session: to the login page.
    let (s, _) = call(&app, "GET", &format!("/ui/residents/{}", persons[1]), None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);

    let (s, _, text) = scrape(&router, None).await;
    assert_eq!(s, StatusCode::OK);
    let m = parse_exposition(&text);

    // Requests by route template and status; the latency histogram moved.
    assert_eq!(
        m.value(
            REQUESTS,
            &[
                ("method", "POST"),
                ("route", CHANGES_ROUTE),
                ("status", "201")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[
                ("method", "GET"),
                ("route", RESIDENT_ROUTE),
                ("status", "200")
            ]
        ),
        Some(persons.len() as f64)
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[
                ("method", "GET"),
                ("route", RESIDENT_ROUTE),
                ("status", "404")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            LATENCY_COUNT,
            &[("method", "GET"), ("route", RESIDENT_ROUTE)]
        ),
        Some(resident_reads_before + persons.len() as f64 + 1.0)
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[
                ("method", "GET"),
                ("route", "/ui/residents/{addressee_number}"),
                ("status", "303")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.types
            .get("machi_http_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );

    // Every route label is a template the routers declare, or `unmatched`.
    let (_, doc) = api::routes().split_for_parts();
    let mut templates: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
    templates.extend(machi::ui::routes().iter().map(|r| r.path.to_string()));
    templates.extend([
        "/openapi.json".into(),
        "/metrics".into(),
        "unmatched".into(),
    ]);
    for s in &m.samples {
        if let Some(route) = s.labels.get("route") {
            assert!(
                templates.contains(route),
                "route label {route:?} is no template"
            );
        }
    }

    // The pools and queues.
    let pool = match db.url() {
        Some(_) => "postgres",
        None => "sqlite_readers",
    };
    for state in ["in_use", "idle"] {
        let v = m
            .value(
                "machi_db_pool_connections",
                &[("pool", pool), ("state", state)],
            )
            .unwrap_or_else(|| panic!("no {pool} {state} gauge: {text}"));
        assert!(v >= 0.0);
    }
    let max = m.value("machi_db_pool_max_connections", &[("pool", pool)]);
    assert_eq!(max, Some(if pool == "postgres" { 8.0 } else { 4.0 }));
    assert!(
        m.value("machi_db_pool_waiting", &[("pool", pool)])
            .is_some()
    );
    // The idle reader of the pool is counted (min_idle 1).
    let open = m
        .value(
            "machi_db_pool_connections",
            &[("pool", pool), ("state", "idle")],
        )
        .unwrap()
        + m.value(
            "machi_db_pool_connections",
            &[("pool", pool), ("state", "in_use")],
        )
        .unwrap();
    assert!(open >= 1.0, "{text}");
    let queue = m.value("machi_sqlite_writer_queued_writes", &[]);
    match pool {
        "sqlite_readers" => assert_eq!(queue, Some(0.0), "{text}"),
        _ => assert_eq!(queue, None, "PostgreSQL has no writer queue: {text}"),
    }

    // No personal data: nothing of the paths, queries or bodies in any name
    // or label (values are numbers, checked by the parser).
    personal.extend(persons.iter().cloned());
    personal.extend([
        household,
        FUCHU.to_string(),
        "髙橋".into(),
        "高橋".into(),
        "%E9%AB%98".into(),
        "令和".into(),
        "0000099990".into(),
        "/people".into(),
    ]);
    // The webhook delivery: its URL, receiver port, path and client are
    // nowhere; the series name the subscription by tenant code and number.
    personal.extend([
        receiver.port.to_string(),
        receiver.path.clone(),
        "%E9%AB%98%E6%A9%8B".into(),
        subscription["client_id"].as_str().unwrap().to_string(),
    ]);
    let sub_id = subscription["subscription_id"]
        .as_i64()
        .unwrap()
        .to_string();
    assert!(
        m.value(
            "machi_webhook_subscription_attempts_total",
            &[
                ("tenant", FUCHU),
                ("subscription", &sub_id),
                ("outcome", "delivered")
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    m.assert_no_personal_data(&personal, &text);
}

/// A webhook receiver on a port of its own whose path looks like a
/// person's (it must never reach /metrics).
struct PlainReceiver {
    port: u16,
    path: String,
    got: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn plain_receiver(addressee: &str) -> PlainReceiver {
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = got.clone();
    let app = axum::Router::new().fallback(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    PlainReceiver {
        port,
        path: format!("/hook/person-{addressee}"),
        got,
    }
}

async fn readyz_follows_the_database_and_healthz_does_not(db: TestDb) {
    let router = api::app(AppState {
        registry: db.registry.clone(),
    });
    let app = Api {
        router,
        headers: vec![],
    };
    let (s, v) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("ok")),
        "{v}"
    );
    let (s, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);

    // The database goes away: PostgreSQL's is dropped (its connections
    // ended), SQLite's file is moved out of its place.
    let moved = match db.url() {
        Some(url) => {
            let name = url.rsplit('/').next().unwrap().to_string();
            machi::store::drop_postgres_database(&postgres_server(), &name)
                .await
                .unwrap();
            None
        }
        None => {
            let machi::store::DatabaseLocation::Sqlite(path) = db.location().await else {
                unreachable!()
            };
            let away = path.with_extension("moved");
            std::fs::rename(&path, &away).unwrap();
            Some((path, away))
        }
    };
    let started = std::time::Instant::now();
    let (s, v) = call(&app, "GET", "/readyz", None).await;
    let waited = started.elapsed();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "not_ready");
    assert!(!v["message_ja"].as_str().unwrap().is_empty());
    assert!(!v["message_en"].as_str().unwrap().is_empty());
    assert!(
        waited < std::time::Duration::from_secs(5),
        "/readyz took {waited:?}"
    );
    // Liveness asks nothing of the database.
    let (s, v) = call(&app, "GET", "/healthz", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));

    // SQLite: the file back in place, ready again.
    if let Some((path, away)) = moved {
        std::fs::rename(&away, &path).unwrap();
        // Ready again once a probe reaches the file (a probe that began
        // while it was away may still be answering on a busy machine).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (s, v) = call(&app, "GET", "/readyz", None).await;
            if s == StatusCode::OK || std::time::Instant::now() > deadline {
                assert_eq!(s, StatusCode::OK, "{v}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

async fn metrics_ask_for_the_token_when_one_is_set(db: TestDb) {
    let token = "metrics-token-for-tests-0123456789";
    let router = api::app_with(
        AppState {
            registry: db.registry.clone(),
        },
        AppOptions {
            metrics_token: Some(token.into()),
            ..Default::default()
        },
    );
    for auth in [None, Some("Bearer wrong"), Some(token)] {
        let res = router
            .clone()
            .oneshot({
                let mut req = Request::get("/metrics");
                if let Some(a) = auth {
                    req = req.header(header::AUTHORIZATION, a);
                }
                req.body(Body::empty()).unwrap()
            })
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "unauthenticated");
        assert!(!v["message_ja"].as_str().unwrap().is_empty());
        assert!(!body.windows(5).any(|w| w == b"machi"), "figures leaked");
    }
    let (s, _, text) = scrape(&router, Some(&format!("Bearer {token}"))).await;
    assert_eq!(s, StatusCode::OK);
    let m = parse_exposition(&text);
    // The refused scrapes were counted, under the route, with their status.
    assert_eq!(
        m.value(
            REQUESTS,
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ),
        Some(3.0),
        "{text}"
    );
    // Without a token, /metrics is open.
    let open = api::app(AppState {
        registry: db.registry.clone(),
    });
    assert_eq!(scrape(&open, None).await.0, StatusCode::OK);
}

/// Runs the built `machi` on the test database; (stdout, stderr).
async fn run_machi(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let database = match db.location().await {
        machi::store::DatabaseLocation::Postgres(url) => url,
        machi::store::DatabaseLocation::Sqlite(path) => path.display().to_string(),
    };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_machi"));
    cmd.arg("--database")
        .arg(database)
        .args(args)
        .env_remove("MACHI_LOG")
        .env_remove("MACHI_LOG_FORMAT")
        .env("MACHI_MASTER_KEY", TEST_MASTER_KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn json_logs_are_one_json_object_a_line(db: TestDb) {
    let db = db.with_tenants().await;
    let by_env = run_machi(&db, &["tenant", "list"], &[("MACHI_LOG_FORMAT", "json")]).await;
    let by_flag = run_machi(&db, &["--log-format", "json", "tenant", "list"], &[]).await;
    for (stdout, stderr) in [by_env, by_flag] {
        // The command ran against the database.
        assert!(stdout.contains("府中市"), "{stdout}");
        let lines: Vec<Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect();
        assert!(!lines.is_empty(), "no log lines");
        for l in &lines {
            assert!(l["timestamp"].is_string(), "{l}");
            assert!(l["level"].is_string(), "{l}");
            assert!(l["target"].is_string(), "{l}");
        }
        assert!(
            lines.iter().any(|l| l["level"] == "INFO"
                && l["fields"]["message"] == json!("master key from MACHI_MASTER_KEY")),
            "{stderr}"
        );
    }
    // The default stays text for people.
    let (_, stderr) = run_machi(&db, &["tenant", "list"], &[]).await;
    let first = stderr.lines().next().expect("a log line");
    assert!(
        first.contains("master key from MACHI_MASTER_KEY"),
        "{stderr}"
    );
    assert!(serde_json::from_str::<Value>(first).is_err(), "{first}");
}

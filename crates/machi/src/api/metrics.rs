//! `/metrics`: the server's own figures in the OpenMetrics text format
//! (which Prometheus scrapes): HTTP requests by route template, method and
//! status with their latency, the store's pools and queues, and webhook
//! deliveries (accepted, failed, commit-to-delivery lag; in all and per
//! subscription) with the subscriptions by status (paused ones need a
//! person).
//!
//! No personal data in any label: a request is labelled by the route
//! template it matched (`/api/v1/tenants/{municipality_code}/residents/{addressee_number}`),
//! never by its path or query; a request that matched no route is
//! `unmatched`; a method other than the usual seven is `other`. A webhook
//! subscription's series carry its tenant's 団体コード (a public number)
//! and the subscription's number, never its URL or client.
//!
//! Protection: with `MACHI_METRICS_TOKEN` set, `/metrics` answers only a
//! request bearing `Authorization: Bearer <token>` (Prometheus'
//! `authorization` scrape setting). Without it, `/metrics` is as open as
//! `/healthz`: it holds counts, timings and pool sizes only, and `machi
//! serve` warns when it binds a non-loopback address without a token.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::auth::constant_time_eq;
use super::error::ApiError;
use crate::store::Store;

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolConnectionLabels {
    pool: &'static str,
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one application (one router): its registry and the
/// store whose pools it reports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pool_connections: Family<PoolConnectionLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    writer_queue: Option<Gauge>,
    subscriptions: Family<StatusLabels, Gauge>,
    store: Store,
    token: Option<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Metrics of an application on `store`; `/metrics` asks for `token`
    /// when there is one.
    pub fn new(store: Store, token: Option<String>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "machi_http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register_with_unit(
            "machi_http_request_duration",
            "Time from a request's arrival to its response head, by method and route template",
            Unit::Seconds,
            latency.clone(),
        );
        let pool_connections = Family::<PoolConnectionLabels, Gauge>::default();
        registry.register(
            "machi_db_pool_connections",
            "Open database connections of a pool: in_use (checked out) or idle",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "machi_db_pool_max_connections",
            "The most connections a pool opens",
            pool_max.clone(),
        );
        let pool_waiting = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "machi_db_pool_waiting",
            "Callers waiting to check a connection out of a pool",
            pool_waiting.clone(),
        );
        let writer_queue = store.state().sqlite_writer_queue.map(|_| {
            let g = Gauge::default();
            registry.register(
                "machi_sqlite_writer_queued_writes",
                "Writes (each with its access-log entry) waiting for the SQLite writer: sent, not yet begun",
                g.clone(),
            );
            g
        });
        let hooks = crate::service::hooks::counters();
        registry.register(
            "machi_webhook_deliveries",
            "Webhook events accepted by their receivers (2xx), by this process",
            hooks.delivered.clone(),
        );
        registry.register(
            "machi_webhook_delivery_failures",
            "Webhook attempts that failed (error status, timeout, no connection), by this process",
            hooks.failed.clone(),
        );
        registry.register_with_unit(
            "machi_webhook_delivery_lag",
            "Time from an event's commit to its accepted delivery",
            Unit::Seconds,
            hooks.lag.clone(),
        );
        registry.register(
            "machi_webhook_subscription_attempts",
            "Webhook attempts per subscription by outcome (delivered, error_status, gone, throttled, no_response, private_address), by this process; labelled by tenant code and subscription number only",
            hooks.attempts.clone(),
        );
        registry.register_with_unit(
            "machi_webhook_subscription_delivery_lag",
            "Time from an event's commit to its accepted delivery, per subscription (tenant code and subscription number only)",
            Unit::Seconds,
            hooks.subscription_lag.clone(),
        );
        registry.register(
            "machi_webhook_event_reads",
            "Chunks of events the webhook worker read from the outbox, by this process: one read serves every subscription of a tenant at the same position",
            hooks.reads.clone(),
        );
        let pull = crate::portal::counters();
        registry.register(
            "machi_portal_pulls",
            "Rounds of the citizen portal's pull worker that completed, by this process",
            pull.pulls.clone(),
        );
        registry.register(
            "machi_portal_pull_failures",
            "Pulls from the citizen portal that failed (unreachable, bad answer, database); retried with backoff, nothing lost",
            pull.pull_failures.clone(),
        );
        registry.register(
            "machi_portal_filings_imported",
            "Filings imported from the citizen portal, by this process",
            pull.imported.clone(),
        );
        registry.register(
            "machi_portal_filings_refused",
            "Filings the import refused (left on the portal): not opening, not matching, replayed",
            pull.refused.clone(),
        );
        registry.register(
            "machi_portal_status_pushes",
            "Status updates the citizen portal accepted",
            pull.statuses_pushed.clone(),
        );
        registry.register(
            "machi_portal_status_push_failures",
            "Status pushes that failed (kept queued for the next round)",
            pull.status_push_failures.clone(),
        );
        let db = &*crate::store::COUNTERS;
        registry.register(
            "machi_db_statements",
            "SQL statements this process ran on its database (BEGIN, COMMIT, SAVEPOINT and the tenant scope included)",
            db.statements.clone(),
        );
        registry.register(
            "machi_db_round_trips",
            "Times this process waited for the PostgreSQL server (a statement, a batch, a prepare); 0 on SQLite",
            db.round_trips.clone(),
        );
        registry.register(
            "machi_db_transactions",
            "Database transactions this process began (a group commit's is one)",
            db.transactions.clone(),
        );
        let subscriptions = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "machi_webhook_subscriptions",
            "Webhook subscriptions of every tenant by status: active, paused (failing for 72 hours; needs a person) or disabled (410 Gone)",
            subscriptions.clone(),
        );
        Metrics {
            registry,
            subscriptions,
            requests,
            latency,
            pool_connections,
            pool_max,
            pool_waiting,
            writer_queue,
            store,
            token,
        }
    }

    fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// Reads the subscriptions by status from the database (before
    /// [`Metrics::render`]); a failed read leaves the last figures.
    pub async fn refresh(&self) {
        let counts = self
            .store
            .read(None, crate::service::hooks::count_subscriptions)
            .await;
        match counts {
            Ok(counts) => {
                for status in ["active", "paused", "disabled"] {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status)
                        .map_or(0, |(_, n)| *n);
                    self.subscriptions
                        .get_or_create(&StatusLabels { status })
                        .set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting webhook subscriptions failed"),
        }
    }

    /// The exposition, with the store's gauges read now.
    pub fn render(&self) -> String {
        let state = self.store.state();
        for p in &state.pools {
            let gauge = |state| {
                self.pool_connections
                    .get_or_create(&PoolConnectionLabels {
                        pool: p.pool,
                        state,
                    })
                    .clone()
            };
            gauge("in_use").set(p.in_use.into());
            gauge("idle").set(p.idle.into());
            let pool = PoolLabels { pool: p.pool };
            self.pool_max.get_or_create(&pool).set(p.max.into());
            self.pool_waiting
                .get_or_create(&pool)
                .set(i64::try_from(p.waiting).unwrap_or(i64::MAX));
        }
        if let (Some(g), Some(q)) = (&self.writer_queue, state.sqlite_writer_queue) {
            g.set(i64::try_from(q).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|sent| constant_time_eq(sent.as_bytes(), token.as_bytes()))
    }
}

/// The method as a label: one of the usual seven, or `other` (a client
/// may send any token as a method).
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    m.observe(
        method,
        route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Metrics.
///
/// The server's own figures (OpenMetrics text): requests by route template,
/// method and status, latency, the store's pools and queues. No personal
/// data. Open unless `MACHI_METRICS_TOKEN` is set; then only with that
/// bearer token.
#[utoipa::path(get, path = "/metrics", tag = "platform",
    security((), ("metrics_token" = [])),
    responses((status = 200, description = "The figures.", body = String,
                content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
              (status = 401, description = "unauthenticated: MACHI_METRICS_TOKEN is set and the request does not bear it (with WWW-Authenticate).", body = super::error::ErrorBody)))]
pub async fn metrics(State(m): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    if !m.allows(&headers) {
        let mut res = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "/metrics にはトークン（Bearer）が必要です。",
            "/metrics needs the metrics bearer token",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return res;
    }
    m.refresh().await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render()).into_response()
}

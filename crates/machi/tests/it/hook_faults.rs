//! Webhooks under faults: the real `machi serve` (with its delivery worker)
//! killed with SIGKILL at random moments while it delivers, then started
//! again on the same database, round after round, while changes are
//! committed all along. The subscribers are HTTP receivers in this test:
//! two plain ones, a slow one, one answering 500 now and then, one
//! answering 429 with Retry-After now and then, and one down (connections
//! refused) for a long stretch of several rounds, which on the worker's
//! clock (scaled 3600×: one real second is an hour) is hours of retries.
//!
//! Afterwards, per subscription: every event reached the receiver at least
//! once, the order in which sequences were first accepted is strictly
//! increasing, a repeated event kept its `webhook-id`, and the subscription
//! is caught up (active, position at the last event). Duplicates (the
//! at-least-once price of a kill between a receiver's 2xx and the worker's
//! record of it) are counted and printed, as are attempts cut off by a
//! kill before the worker recorded them.
//!
//! `MACHI_HOOK_FAULTS_ROUNDS` (default 8, at least 6) and
//! `MACHI_HOOK_FAULTS_SEED` (default: a random seed, printed) repeat a run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use machi::service::hooks::{HookPolicy, NewSubscription};
use machi::service::{Actor, Clock, Registry};
use machi::store::{Param, StoreError};
use machi_domain::change::ChangeRequest;
use machi_domain::dates::EraTable;
use serde_json::Value;

use crate::faults::{Server, database_arg};
use crate::support::{FUCHU, TestDb, code};

both_backends!(every_event_reaches_every_subscriber_in_order_through_sigkills);

/// The delivery worker's settings in the killed server: a short lease (a
/// killed worker's subscriptions are taken back after it), a quick poll
/// (this test commits from its own process, which does not wake the
/// server's worker), and its clock 3600× faster than real time (the retry
/// schedule of 5 s, 5 min, 30 min, 2 h, 5 h… passes in seconds).
const SERVER_ENV: &[(&str, &str)] = &[
    ("MACHI_WEBHOOK_ALLOW_INSECURE_LOCAL", "1"),
    ("MACHI_WEBHOOK_LEASE_MS", "1500"),
    ("MACHI_WEBHOOK_POLL_MS", "100"),
    ("MACHI_WEBHOOK_TIMEOUT_MS", "1000"),
    ("MACHI_WEBHOOK_CLOCK_SCALE", "3600"),
];

/// How a receiver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// Answers after up to this many milliseconds.
    Slow(u64),
    /// Answers this status to about one request in five (429 with
    /// `Retry-After: 1`).
    Flaky(u16),
    /// Refuses connections while the test holds it down.
    Outage,
}

#[derive(Default)]
struct Log {
    /// Requests that reached the handler.
    requests: usize,
    /// Accepted (2xx) deliveries in the order they came: (sequence, webhook-id).
    accepted: Vec<(i64, String)>,
}

struct Receiver {
    name: &'static str,
    kind: Kind,
    port: u16,
    log: Arc<Mutex<Log>>,
    rng: Arc<Mutex<fastrand::Rng>>,
    /// Stops the listener (graceful: open connections are closed too).
    stop: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Receiver {
    async fn start(name: &'static str, kind: Kind, seed: u64) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut r = Receiver {
            name,
            kind,
            port,
            log: Arc::default(),
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))),
            stop: None,
        };
        r.serve(listener);
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (log, rng, kind) = (self.log.clone(), self.rng.clone(), self.kind);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (log, rng) = (log.clone(), rng.clone());
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let seq: i64 = v["sequence"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let (status, delay) = {
                        let mut rng = rng.lock().unwrap();
                        match kind {
                            Kind::Slow(ms) => (200, rng.u64(0..=ms)),
                            Kind::Flaky(s) if rng.u8(0..5) == 0 => (s, 0),
                            _ => (200, 0),
                        }
                    };
                    // Recorded on arrival: a 2xx the worker never reads
                    // (killed meanwhile) still counts as received.
                    {
                        let mut l = log.lock().unwrap();
                        l.requests += 1;
                        if status == 200 {
                            l.accepted.push((seq, id));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let mut res = axum::response::Response::new(Body::empty());
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    if status == 429 {
                        res.headers_mut()
                            .insert("retry-after", "1".parse().unwrap());
                    }
                    res
                }
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        self.stop = Some((tx, task));
    }

    /// Down: the port refuses connections.
    async fn down(&mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Up again on the same port.
    async fn up(&mut self) {
        let started = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "cannot listen on {} again: {e}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    fn accepted(&self) -> Vec<(i64, String)> {
        self.log.lock().unwrap().accepted.clone()
    }

    fn requests(&self) -> usize {
        self.log.lock().unwrap().requests
    }

    /// Distinct sequences accepted so far.
    fn distinct(&self) -> usize {
        self.accepted()
            .iter()
            .map(|a| a.0)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Commits changes (a family moving in) from this process until `stop`.
async fn committer(registry: Registry, stop: Arc<AtomicBool>, seed: u64) -> (usize, usize) {
    let req: ChangeRequest = serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        match registry
            .submit(&code(FUCHU), &req, &Actor::system("clerk"))
            .await
        {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..=60))).await;
    }
    (ok, failed)
}

async fn every_event_reaches_every_subscriber_in_order_through_sigkills(db: TestDb) {
    let backend = if db.url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let db = db.with_tenants().await;
    let database = database_arg(&db.location().await);
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("machi.log");
    let rounds: usize = std::env::var("MACHI_HOOK_FAULTS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
        .max(6);
    let seed: u64 = std::env::var("MACHI_HOOK_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("hook_faults[{backend}]: {rounds} rounds, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let registry = Registry::new(db.store.clone(), EraTable::standard(), Clock::System)
        .with_hook_policy(HookPolicy {
            allow_insecure_local: true,
            allow_private: false,
            require_resolvable: false,
        });
    let t = code(FUCHU);
    let kinds = [
        ("plain-1", Kind::Plain),
        ("plain-2", Kind::Plain),
        ("slow", Kind::Slow(150)),
        ("flaky-500", Kind::Flaky(500)),
        ("flaky-429", Kind::Flaky(429)),
        ("long-outage", Kind::Outage),
    ];
    let mut receivers = Vec::new();
    let mut subscriptions = Vec::new();
    for (i, (name, kind)) in kinds.iter().enumerate() {
        let r = Receiver::start(name, *kind, seed ^ (i as u64 + 1)).await;
        let s = registry
            .create_subscription(
                &t,
                "hook-faults",
                NewSubscription {
                    url: r.url(),
                    types: vec![],
                    after: None,
                },
                &Actor::system("setup"),
            )
            .await
            .unwrap();
        subscriptions.push(s);
        receivers.push(r);
    }
    let start_position = subscriptions[0].position;
    let outage = receivers.len() - 1;
    // Down from the second round to the fifth: hours on the worker's clock.
    let (outage_from, outage_to) = (1, rounds - 3);

    let stop = Arc::new(AtomicBool::new(false));
    let committers: Vec<_> = (0..2)
        .map(|k| {
            tokio::spawn(committer(
                registry.clone(),
                stop.clone(),
                seed ^ (0x100 + k),
            ))
        })
        .collect();
    let started = Instant::now();
    let mut kill_delays = Vec::new();
    let mut outage_started = None;
    let mut outage_secs = 0.0;
    let in_flight_at_kill = AtomicUsize::new(0);
    for round in 0..rounds {
        if round == outage_from {
            receivers[outage].down().await;
            outage_started = Some(Instant::now());
        }
        if round == outage_to {
            receivers[outage].up().await;
            outage_secs = outage_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        }
        let mut server = Server::start_with(&database, &log, SERVER_ENV).await;
        let delay = rng.u64(300..=1500);
        kill_delays.push(delay);
        let before: usize = receivers.iter().map(Receiver::requests).sum();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let during: usize = receivers.iter().map(Receiver::requests).sum();
        server.kill();
        if during > before {
            in_flight_at_kill.fetch_add(1, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (mut committed, mut refused) = (0, 0);
    for c in committers {
        let (ok, failed) = c.await.unwrap();
        committed += ok;
        refused += failed;
    }
    let fault_secs = started.elapsed().as_secs_f64();

    // The events every subscriber must get.
    let events: Vec<i64> = db
        .store
        .read(Some(&t), move |tx| {
            tx.query(
                "SELECT seq FROM outbox WHERE tenant = $1 AND seq > $2 ORDER BY seq",
                &[Param::Text(FUCHU), Param::Int(start_position)],
            )?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .unwrap();
    assert!(
        (committed..=committed + refused).contains(&events.len()),
        "{} events for {committed} committed changes ({refused} refused)",
        events.len()
    );
    assert!(
        committed >= rounds,
        "too few changes ({committed}) to say anything"
    );

    // Once more, left to run: everything is delivered.
    let server = Server::start_with(&database, &log, SERVER_ENV).await;
    let calm = Instant::now();
    // When each receiver had every event, in seconds after the last start.
    let mut complete: Vec<Option<f64>> = vec![None; receivers.len()];
    while complete.iter().any(Option::is_none) && calm.elapsed() < Duration::from_secs(90) {
        for (c, r) in complete.iter_mut().zip(&receivers) {
            if c.is_none() && r.distinct() >= events.len() {
                *c = Some(calm.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calm_secs = calm.elapsed().as_secs_f64();
    // Caught up on record too (the last settle follows the last 2xx).
    let mut views = Vec::new();
    while calm.elapsed() < Duration::from_secs(120) {
        views = registry.subscriptions(&t, None).await.unwrap();
        if views
            .iter()
            .all(|v| v.position == start_position + events.len() as i64)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);

    println!(
        "hook_faults[{backend}]: {} events ({committed} changes committed, {refused} refused) in \
         {fault_secs:.1} s of {rounds} SIGKILLs (after {}–{} ms; {} with requests during the round), \
         receiver down {outage_secs:.1} s real (≈ {:.1} h on the worker's clock); caught up \
         {calm_secs:.1} s after the last start",
        events.len(),
        kill_delays.iter().min().unwrap(),
        kill_delays.iter().max().unwrap(),
        in_flight_at_kill.load(Ordering::SeqCst),
        outage_secs,
    );
    let expected: BTreeSet<i64> = events.iter().copied().collect();
    let mut failures = Vec::new();
    for ((r, s), complete) in receivers.iter().zip(&subscriptions).zip(&complete) {
        let accepted = r.accepted();
        // Order of first acceptance, and the id each sequence came with.
        let mut first: Vec<i64> = Vec::new();
        let mut ids: BTreeMap<i64, &str> = BTreeMap::new();
        let mut changed_id = 0;
        for (seq, id) in &accepted {
            match ids.get(seq) {
                None => {
                    ids.insert(*seq, id);
                    first.push(*seq);
                }
                Some(prev) if prev != id => changed_id += 1,
                Some(_) => {}
            }
        }
        let got: BTreeSet<i64> = first.iter().copied().collect();
        let missing: Vec<i64> = expected.difference(&got).copied().collect();
        let unexpected: Vec<i64> = got.difference(&expected).copied().collect();
        let in_order = first.windows(2).all(|w| w[0] < w[1]);
        let duplicates = accepted.len() - first.len();
        let id = s.subscription_id;
        let (recorded, recorded_ok) = db
            .store
            .read(Some(&t), move |tx| {
                let r = tx.query_one(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0) \
                     FROM webhook_attempts WHERE tenant = $1 AND subscription_id = $2",
                    &[Param::Text(FUCHU), Param::Int(id)],
                )?;
                Ok::<_, StoreError>((r.int(0)?, r.int(1)?))
            })
            .await
            .unwrap();
        let view = views.iter().find(|v| v.subscription_id == id);
        println!(
            "hook_faults[{backend}]: {:<11} ({:?}): {} of {} events (all {:.1} s after the last start), \
             first deliveries in order: {}, \
             {} accepted deliveries = {duplicates} duplicates, {} requests; attempts on record {recorded} \
             ({recorded_ok} accepted: {} accepted deliveries unrecorded, cut off by a kill)",
            r.name,
            r.kind,
            got.len(),
            expected.len(),
            complete.unwrap_or(f64::NAN),
            if in_order { "yes" } else { "NO" },
            accepted.len(),
            r.requests(),
            accepted.len() as i64 - recorded_ok,
        );
        if !missing.is_empty() {
            failures.push(format!(
                "{}: {} events never delivered (first {:?})",
                r.name,
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        if !unexpected.is_empty() {
            failures.push(format!(
                "{}: events not of this run: {unexpected:?}",
                r.name
            ));
        }
        if !in_order {
            failures.push(format!(
                "{}: first deliveries out of order: {first:?}",
                r.name
            ));
        }
        if changed_id > 0 {
            failures.push(format!(
                "{}: {changed_id} redeliveries under another webhook-id",
                r.name
            ));
        }
        if recorded_ok > accepted.len() as i64 {
            failures.push(format!(
                "{}: {recorded_ok} accepted attempts on record but only {} accepted deliveries",
                r.name,
                accepted.len()
            ));
        }
        match view {
            Some(v)
                if v.status == "active"
                    && v.position == start_position + events.len() as i64
                    && v.failed_attempts == 0 => {}
            other => failures.push(format!("{}: not caught up on record: {other:?}", r.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nserver log: {}",
        log.display()
    );
    // Kept for a failure's message only.
    drop(logs);
}

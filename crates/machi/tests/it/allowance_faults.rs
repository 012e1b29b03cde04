//! The 児童手当 system fed through a hub that dies: the real `machi
//! allowance` process reads the pull feed and the residents API of the real
//! `machi serve`, which is killed with SIGKILL several times while it
//! answers, then started again on the same database. Between the two sits
//! a proxy standing in for the town's network: it answers 502 while no hub
//! runs, cuts each feed answer to a few events (so that reading the stream
//! takes many requests) and sends every other answer with the previous
//! answer's events in front of the new ones again (duplicate deliveries).
//!
//! The registry's script is fixed (births, move-ins, a 世帯分離 taking a
//! claimant's child and its mother to a new household, a move-out, a death,
//! each on a fixed date), and so are the claims entered before it. A
//! second allowance database reads the same feed with no faults at all.
//! Afterwards: every change event reached the killed run at least once,
//! first deliveries in sequence order, and the two allowance states are
//! equal — claimants, children with their rank, the entitlement of every
//! month with its rule, the work items. Nothing in either state may differ:
//! both databases number their claims and work items from 1 in the order
//! of the same feed and keep no clock time, so even ids are compared.
//!
//! `MACHI_ALLOWANCE_FAULTS_SEED` (default 12) repeats the kill timings'
//! draws (the timings themselves depend on the machine).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use machi_allowance::rules;
use machi_allowance::store::{Store, WorkKind};
use machi_allowance::worker::LinkConfig;
use serde_json::{Value, json};

use crate::allowance::{catch_up, d, family, prepared, spawn_allowance, town, ym};
use crate::contract::person;
use crate::faults::{Server, database_arg};
use crate::support::{FUCHU, TestDb};

both_backends!(the_allowance_state_survives_a_hub_killed_mid_delivery);

/// Hub kills while the allowance system is still reading.
const KILLS: usize = 5;
/// Events per feed answer after the proxy cuts it.
const BATCH: usize = 3;
/// The proxy's own delay per request, so that reading the stream spans
/// several kills.
const HOP: Duration = Duration::from_millis(15);

#[derive(Default)]
struct Deliveries {
    /// Feed answers passed on.
    answers: usize,
    /// Every sequence sent to the allowance system, in order, repeats too.
    sent: Vec<i64>,
    /// Events sent again on purpose.
    duplicates: usize,
    /// The previous answer's events (sent again in front of the next).
    previous: Vec<Value>,
    /// Requests answered 502 (no hub, or the hub died meanwhile).
    cut: usize,
}

/// The stand-in network between the allowance system and the hub.
struct Proxy {
    hub: Mutex<Option<String>>,
    http: reqwest::Client,
    in_flight: AtomicUsize,
    log: Mutex<Deliveries>,
}

impl Proxy {
    async fn start() -> (Arc<Proxy>, String) {
        let proxy = Arc::new(Proxy {
            hub: Mutex::new(None),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            in_flight: AtomicUsize::new(0),
            log: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (proxy, base)
    }

    fn route_to(&self, hub: Option<String>) {
        *self.hub.lock().unwrap() = hub;
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn bad_gateway(p: &Proxy) -> Response {
    p.log.lock().unwrap().cut += 1;
    let mut r = Response::new(Body::from("no hub"));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    p.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(&p.in_flight);
    tokio::time::sleep(HOP).await;
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return bad_gateway(&p);
    };
    let Some(hub) = p.hub.lock().unwrap().clone() else {
        return bad_gateway(&p);
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str())
        .unwrap_or("/");
    let mut out = p.http.request(parts.method.clone(), format!("{hub}{pq}"));
    for (k, v) in &parts.headers {
        if k == "authorization" || k == "content-type" {
            out = out.header(k, v);
        }
    }
    let Ok(res) = out.body(body).send().await else {
        return bad_gateway(&p);
    };
    let status = res.status();
    let content_type = res.headers().get("content-type").cloned();
    let Ok(bytes) = res.bytes().await else {
        return bad_gateway(&p);
    };
    let mut bytes = bytes.to_vec();
    if status == StatusCode::OK
        && parts.uri.path().ends_with("/events")
        && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
        && let Some(events) = v["events"].as_array().cloned()
    {
        let mut log = p.log.lock().unwrap();
        log.answers += 1;
        let fresh: Vec<Value> = events.into_iter().take(BATCH).collect();
        let mut send = Vec::new();
        if log.answers % 2 == 0 {
            send.extend(log.previous.iter().cloned());
            log.duplicates += log.previous.len();
        }
        send.extend(fresh.iter().cloned());
        for e in &send {
            let seq = e["sequence"].as_str().and_then(|s| s.parse().ok());
            log.sent.push(seq.unwrap_or(-1));
        }
        if !fresh.is_empty() {
            log.previous = fresh;
        }
        v["events"] = Value::Array(send);
        bytes = serde_json::to_vec(&v).unwrap();
    }
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert("content-type", ct);
    }
    r
}

/// Kills the child process when dropped (a failed assertion leaves no
/// allowance process behind).
struct Allowance(std::process::Child);

impl Drop for Allowance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state a clerk sees: claims with children, each child's rank, amount
/// and rule in every month from April 2024 to March 2027, the payment
/// lines of each payment month, and the work items.
async fn clerk_view(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for c in store.claims().await.unwrap() {
        out.push(format!(
            "claim {} {} {} {:?} {:?} children {:?}",
            c.id,
            c.claimant,
            c.household,
            c.ended_on,
            c.end_reason,
            c.children
                .iter()
                .map(|x| (&x.child, x.left_on, &x.left_reason))
                .collect::<Vec<_>>()
        ));
        for m in rules::months(&c.rules(), ym(2024, 4), ym(2027, 3)) {
            out.push(format!(
                "  {} {} paid in {}: {}",
                m.month.iso(),
                m.total,
                m.paid_in.iso(),
                m.children
                    .iter()
                    .map(|x| format!("{}#{} {} {}", x.key, x.rank, x.amount, x.rule.explain_ja()))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
    }
    let mut p = ym(2024, 6);
    while p <= ym(2027, 2) {
        for l in machi_allowance::web::payment_lines(store, p).await.unwrap() {
            out.push(format!("pay {} {l:?}", p.iso()));
        }
        p = p.plus(2);
    }
    for w in store.work_items(false).await.unwrap() {
        out.push(format!("work {w:?}"));
    }
    out
}

async fn the_allowance_state_survives_a_hub_killed_mid_delivery(db: TestDb) {
    let backend = if db.url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let began = Instant::now();
    let t = town(db).await;
    let seed: u64 = std::env::var("MACHI_ALLOWANCE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut rng = fastrand::Rng::with_seed(seed);

    // Before the allowance system reads anything: families A and B move in
    // and claim (entered by the clerk in both databases).
    let a = t
        .submit(family(
            "2024-04-01",
            ("架空", "カクウ"),
            &[
                ("一郎", "イチロウ", "2019-05-10"),
                ("二郎", "ジロウ", "2022-06-01"),
            ],
        ))
        .await;
    let b = t
        .submit(family(
            "2025-03-01",
            ("見本", "ミホン"),
            &[("一太", "イチタ", "2012-04-01")],
        ))
        .await;
    let id = |o: &machi::service::registry::ChangeOutcome, i: usize| {
        o.rows[i].record.addressee_number.to_string()
    };
    let heads = (id(&a, 0), id(&b, 1));
    let household_a = a.rows[0].record.household_number.to_string();
    let (dir_clean, clean) = prepared(&t, &heads).await;
    let (dir_killed, killed) = prepared(&t, &heads).await;
    drop(killed);

    // The script: other families move in (work for the clerk: a claim may
    // be due), and among them the changes that touch the claims.
    let mut others = Vec::new();
    for i in 0..32 {
        let o = t
            .submit(family(
                "2025-05-01",
                ("試験", "シケン"),
                &[(&format!("子{i}"), "コ", "2020-01-15")],
            ))
            .await;
        others.push(o.rows[0].record.household_number.to_string());
        match i {
            // A third child born to A: an increase may be due.
            3 => {
                t.submit(json!({"effective_date": "2025-01-25", "command": {"type": "birth",
                    "household_number": household_a,
                    "person": person("架空　三郎", "カクウ　サブロウ", "2025-01-25", "male", "子")}}))
                    .await;
            }
            // A birth in a household without a claim.
            6 => {
                t.submit(
                    json!({"effective_date": "2025-05-20", "command": {"type": "birth",
                    "household_number": others[2],
                    "person": person("試験　花", "シケン　ハナ", "2025-05-20", "female", "子")}}),
                )
                .await;
            }
            // 世帯分離: A's mother and 二郎 to a household of their own.
            9 => {
                t.submit(
                    json!({"effective_date": "2025-04-15", "command": {"type": "household_split",
                    "relationships": [
                        {"addressee_number": id(&a, 1), "relationship": "世帯主"},
                        {"addressee_number": id(&a, 3), "relationship": "子"}]}}),
                )
                .await;
            }
            // A's eldest moves out (planned 20 June 2025).
            12 => {
                t.submit(json!({"effective_date": "2025-06-20", "command": {"type": "move_out",
                    "persons": [id(&a, 2)], "destination": {"address": "東京都昭島市田中町一丁目"}}}))
                    .await;
            }
            // B's claimant dies.
            18 => {
                t.submit(
                    json!({"effective_date": "2025-09-05", "command": {"type": "death",
                    "person": id(&b, 1)}}),
                )
                .await;
            }
            _ => {}
        }
    }

    // The change events the allowance system must receive, read through
    // the registry's API as it reads them.
    let reader = t.worker(&clean);
    let mut expected = Vec::new();
    loop {
        let after = expected.last().copied().unwrap_or(0);
        let batch = reader.client.events(after, 0).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            expected.push(e["sequence"].as_str().unwrap().parse::<i64>().unwrap());
        }
    }
    let last = *expected.last().unwrap();

    // The fault-free run.
    catch_up(&t.db.registry, &reader).await;
    drop(reader);

    // The killed run: the real processes, through the proxy.
    let database = database_arg(&t.db.location().await);
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("machi.log");
    let (proxy, proxy_base) = Proxy::start().await;
    let link = LinkConfig {
        base_url: proxy_base,
        ..t.link.clone()
    };
    let path = dir_killed.path().join("allowance.sqlite");
    let watch = Store::open(&path).unwrap();
    let mut allowance = Allowance(spawn_allowance(&link, &path));
    // (cursor at the kill, requests in flight at the kill, ms after the
    // allowance system's first progress through that hub).
    let mut kills: Vec<(i64, usize, u64)> = Vec::new();
    let hub = loop {
        let server = Server::start_with(&database, &log, &[]).await;
        let before = watch.cursor(FUCHU).await.unwrap();
        proxy.route_to(Some(server.base.clone()));
        if kills.len() == KILLS || before >= last {
            break server;
        }
        // Kill it only once the allowance system has applied something
        // through it again (so its retry pause is back to the shortest),
        // at a random moment while it goes on reading.
        let start = Instant::now();
        while watch.cursor(FUCHU).await.unwrap() == before {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the allowance system made no progress through the hub; log {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = rng.u64(20..=200);
        tokio::time::sleep(Duration::from_millis(after)).await;
        let in_flight = proxy.in_flight.load(Ordering::SeqCst);
        let mut server = server;
        server.kill();
        proxy.route_to(None);
        kills.push((watch.cursor(FUCHU).await.unwrap(), in_flight, after));
        // Down for a moment.
        tokio::time::sleep(Duration::from_millis(rng.u64(50..=400))).await;
    };
    let start = Instant::now();
    while watch.cursor(FUCHU).await.unwrap() < last {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the allowance system did not catch up after the last start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = allowance.0.kill();
    let _ = allowance.0.wait();
    drop(hub);

    let (answers, sent, duplicates, cut) = {
        let d = proxy.log.lock().unwrap();
        (d.answers, d.sent.clone(), d.duplicates, d.cut)
    };
    println!(
        "allowance_faults[{backend}]: {} change events; {} hub kills (cursor, requests in flight, ms after its first progress): {kills:?}; \
         {} feed answers, {} events sent ({} sent again on purpose), {} requests answered 502; {:.1} s in all",
        expected.len(),
        kills.len(),
        answers,
        sent.len(),
        duplicates,
        cut,
        began.elapsed().as_secs_f64()
    );
    // The kills came mid-delivery: while the allowance system was still
    // behind and with requests under way.
    let mid = kills.iter().filter(|(c, n, _)| *c < last && *n > 0).count();
    assert!(
        mid >= 3,
        "too few kills mid-delivery: {kills:?} (last {last})"
    );
    assert!(duplicates > 0 && cut > 0);
    // Every event at least once, first deliveries in order.
    let mut first = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &sent {
        if seen.insert(*s) {
            first.push(*s);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert_eq!(first, expected, "first deliveries");

    // The same state as the fault-free run.
    let clean_snapshot = clean.snapshot().await.unwrap();
    let killed_snapshot = watch.snapshot().await.unwrap();
    assert_eq!(
        killed_snapshot, clean_snapshot,
        "stored state (kills {kills:?})"
    );
    let view = clerk_view(&clean).await;
    assert_eq!(clerk_view(&watch).await, view, "clerk's view");
    let applied = clean_snapshot
        .iter()
        .filter(|l| l.starts_with("applied:"))
        .count();
    assert_eq!(applied, expected.len());

    // And the script did what it says, in both.
    let claims = watch.claims().await.unwrap();
    assert_eq!(claims.len(), 2);
    let ca = &claims[0];
    let eldest = ca.children.iter().find(|c| c.child == id(&a, 2)).unwrap();
    assert_eq!(eldest.left_on, Some(d("2025-06-20")));
    assert_eq!(claims[1].ended_on, Some(d("2025-09-05")));
    assert_eq!(claims[1].end_reason.as_deref(), Some("死亡"));
    let work = watch.work_items(false).await.unwrap();
    let kinds: Vec<WorkKind> = work.iter().map(|w| w.kind).collect();
    for k in [
        WorkKind::BirthIncrease,
        WorkKind::BirthClaim,
        WorkKind::HouseholdCheck,
        WorkKind::ChildLeft,
        WorkKind::ClaimEnded,
        WorkKind::MoveInClaim,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing: {work:?}");
    }
    assert!(
        work.iter()
            .any(|w| w.kind == WorkKind::HouseholdCheck && w.claim_id == Some(ca.id)),
        "{work:?}"
    );
    // July 2025: 一郎 gone, 二郎 (third birthday in June) ¥10,000 as the
    // first of A's children still counted.
    let july = rules::month(&ca.rules(), ym(2025, 7)).unwrap();
    assert_eq!(july.children.len(), 1, "{july:?}");
    drop((dir_clean, logs));
}

//! Durability under faults: the real `machi serve` process, several HTTP
//! writers submitting changes concurrently, and the server killed (SIGKILL)
//! at a random moment, then started again on the same database, round after
//! round. Afterwards every change the server acknowledged (201 with its
//! change id) is in the database exactly once; a change that was not
//! acknowledged may or may not be there, but never twice; change ids,
//! addressee numbers, history numbers, events and access-log entries run
//! without gaps, and the access-log chain verifies (`machi audit verify`).
//!
//! Each request carries a marker of its own (writer and request number) in
//! its 入力端末 and in the person's name, so that a change stored twice, or
//! stored under another change's id, shows.
//!
//! `MACHI_FAULTS_ROUNDS` (default 25) and `MACHI_FAULTS_SEED` (default: a
//! random seed, printed) repeat a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use machi::service::Actor;
use machi::store::{DatabaseLocation, Param, StoreError};
use machi_domain::ids::AddresseeNumber;
use serde_json::{Value, json};

use crate::support::{FUCHU, TEST_MASTER_KEY, TestDb, code};

/// Concurrent writers.
const WRITERS: usize = 6;
/// The server is killed this long after it answers /healthz (uniformly
/// drawn, milliseconds).
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 0..=1500;
/// Longest wait for one answer (a hung server fails the test).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) type Http = Client<HttpConnector, Full<Bytes>>;

/// A fresh client per round: no pooled connection outlives its server, and
/// no request is ever sent twice by the client itself (a retried request
/// could be stored twice through no fault of the server's).
pub(crate) fn http() -> Http {
    Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .build_http()
}

/// One HTTP exchange: the status and the body as JSON (text otherwise), or
/// why there was no answer.
pub(crate) async fn exchange(
    http: &Http,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Result<(u16, Value), String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some((content_type, text)) => {
            req = req.header("content-type", content_type);
            Full::new(Bytes::from(text))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req.body(body).map_err(|e| e.to_string())?;
    let answer = async {
        let res = http.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok((status, v))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, answer)
        .await
        .map_err(|_| format!("no answer from {url} within {REQUEST_TIMEOUT:?}"))?
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The database as the command line takes it.
pub(crate) fn database_arg(loc: &DatabaseLocation) -> String {
    match loc {
        DatabaseLocation::Sqlite(p) => p.display().to_string(),
        DatabaseLocation::Postgres(url) => url.clone(),
    }
}

/// A `machi` command on the test database, its log appended to `log`.
pub(crate) fn machi(database: &str, log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_machi"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log");
    cmd.arg("--database")
        .arg(database)
        .env("MACHI_MASTER_KEY", TEST_MASTER_KEY)
        .env("MACHI_LOG", "warn")
        .env_remove("MACHI_MASTER_KEY_FILE")
        .env_remove("MACHI_SQLITE_SYNC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// A running `machi serve`; killed (SIGKILL) when dropped, so that no server
/// outlives a failed test.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Server {
    /// Starts the process without waiting for it.
    fn spawn(database: &str, log: &Path) -> Server {
        Server::spawn_with(database, log, &[])
    }

    /// Starts the process, with `env` set, without waiting for it.
    pub(crate) fn spawn_with(database: &str, log: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let child = machi(database, log)
            .envs(env.iter().copied())
            .args(["serve", "--port", &port.to_string()])
            .spawn()
            .expect("start machi serve");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Starts the process and waits until it answers /healthz.
    async fn start(database: &str, log: &Path) -> Server {
        Server::start_with(database, log, &[]).await
    }

    /// [`Server::start`] with `env` set.
    pub(crate) async fn start_with(database: &str, log: &Path, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn_with(database, log, env);
        let client = http();
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("server state") {
                panic!(
                    "machi serve exited ({status}) before answering; its log: {}",
                    log.display()
                );
            }
            let url = format!("{}/healthz", server.base);
            if let Ok((200, _)) = exchange(&client, Method::GET, &url, &[], None).await {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "machi serve did not answer /healthz within a minute; its log: {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Digits and Latin letters in full width, for a marker inside a name.
fn zenkaku(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' => char::from_u32(c as u32 - 0x20 + 0xFF00).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// A change the server acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    marker: String,
    change_id: i64,
    person: String,
    name: String,
}

/// What one writer did over all rounds.
struct Writer {
    id: usize,
    next: u64,
    rng: fastrand::Rng,
    acked: Vec<Ack>,
    /// Persons this writer brought in (and alone corrects).
    persons: Vec<String>,
    /// Requests without an answer: stored or not, nobody knows.
    unknown: u64,
    /// Answers other than 201.
    refused: Vec<(u16, Value)>,
}

impl Writer {
    /// Submits changes until `stop`: mostly a 国内転入 of a new person, and
    /// now and then a 誤記修正 of the name of a person it brought in (so that
    /// people get several history numbers).
    async fn run(mut self, base: String, token: Arc<String>, stop: Arc<AtomicBool>) -> Writer {
        let http = http();
        let url = format!("{base}/api/v1/tenants/{FUCHU}/changes");
        while !stop.load(Ordering::SeqCst) {
            self.next += 1;
            let marker = format!("F{}-{}", self.id, self.next);
            let name = format!("耐久　{}", zenkaku(&format!("W{}N{}", self.id, self.next)));
            let correct = (!self.persons.is_empty() && self.rng.u8(0..3) == 0)
                .then(|| self.persons[self.rng.usize(0..self.persons.len())].clone());
            let body = match &correct {
                Some(person) => json!({
                    "effective_date": "2024-07-01", "input_place": "市民課窓口", "input_terminal": marker,
                    "command": {"type": "clerical_correction", "person": person, "patch": {"name": name}}
                }),
                None => json!({
                    "effective_date": "2024-04-01", "filed_on": "2024-04-01",
                    "input_place": "市民課窓口", "input_terminal": marker,
                    "command": {"type": "move_in", "previous_address": "東京都調布市小島町二丁目",
                        "persons": [{"name": name, "name_kana": "タイキュウ　シケン",
                            "birth_date": "1990-05-05", "sex": "female", "relationship": "世帯主"}],
                        "household": {"type": "new", "address": {
                            "address": format!("東京都府中市宮西町二丁目{}番地", self.next % 50 + 1),
                            "postal_code": "183-0056"}}}
                }),
            };
            let answer = exchange(
                &http,
                Method::POST,
                &url,
                &[("authorization", token.as_str())],
                Some(("application/json", body.to_string())),
            )
            .await;
            match answer {
                Ok((201, v)) => {
                    let change_id = v["change_id"].as_i64().expect("change_id");
                    let person = match correct {
                        Some(p) => p,
                        None => {
                            let p = v["rows"][0]["addressee_number"]
                                .as_str()
                                .expect("addressee_number")
                                .to_string();
                            self.persons.push(p.clone());
                            p
                        }
                    };
                    self.acked.push(Ack {
                        marker,
                        change_id,
                        person,
                        name,
                    });
                }
                Ok((status, v)) => self.refused.push((status, v)),
                Err(_) => {
                    self.unknown += 1;
                    // The server is gone (or going): do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        self
    }
}

/// Registers an API client and gets its token from the running server.
async fn token(db: &TestDb, server: &Server) -> String {
    let (id, secret) = db
        .registry
        .create_client(
            &code(FUCHU),
            "faults",
            "faults:residents:read faults:changes:read faults:changes:write",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    // Its changes commit at once (a second person approved that).
    crate::duties::allow_direct_commit(db, FUCHU, &id).await;
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let (status, v) = exchange(
        &http(),
        Method::POST,
        &format!("{}/oauth/token", server.base),
        &[],
        Some(("application/x-www-form-urlencoded", form)),
    )
    .await
    .expect("token");
    assert_eq!(status, 200, "{v}");
    format!("Bearer {}", v["access_token"].as_str().unwrap())
}

/// A row of `resident_history`, as the checks need it.
#[derive(Debug)]
struct HistoryRow {
    person: String,
    number: i64,
    change_id: i64,
    /// 入力端末: the request's marker.
    marker: String,
    /// The stored record (holding the name).
    record: String,
}

/// The rows the checks read, straight from the tables.
struct Stored {
    /// (change_id, 入力端末)
    changes: Vec<(i64, String)>,
    history: Vec<HistoryRow>,
    /// (seq, change_id)
    events: Vec<(i64, Option<i64>)>,
    /// Access-log entries of changes.
    change_audit_entries: i64,
    /// Sequence heads: (addressee, change, event, audit).
    heads: (i64, i64, i64, i64),
}

async fn stored(db: &TestDb) -> Stored {
    let t = code(FUCHU);
    db.store
        .read(Some(&t), |tx| {
            let t = Param::Text(FUCHU);
            let changes = tx
                .query(
                    "SELECT change_id, input_terminal FROM changes WHERE tenant = $1",
                    std::slice::from_ref(&t),
                )?
                .iter()
                .map(|r| Ok((r.int(0)?, r.text(1)?)))
                .collect::<Result<_, StoreError>>()?;
            let history = tx
                .query(
                    "SELECT addressee_number, history_number, change_id, input_terminal, record \
                     FROM resident_history WHERE tenant = $1",
                    std::slice::from_ref(&t),
                )?
                .iter()
                .map(|r| {
                    Ok(HistoryRow {
                        person: r.text(0)?,
                        number: r.int(1)?,
                        change_id: r.int(2)?,
                        marker: r.text(3)?,
                        record: r.text(4)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            let events = tx
                .query(
                    "SELECT seq, change_id FROM outbox WHERE tenant = $1",
                    std::slice::from_ref(&t),
                )?
                .iter()
                .map(|r| Ok((r.int(0)?, r.opt_int(1)?)))
                .collect::<Result<_, StoreError>>()?;
            let change_audit_entries = tx
                .query_one(
                    "SELECT COUNT(*) FROM audit_log WHERE tenant = $1 AND function LIKE 'change.%'",
                    std::slice::from_ref(&t),
                )?
                .int(0)?;
            let h = tx.query_one(
                "SELECT addressee_seq, change_seq, event_seq, audit_seq FROM tenant_heads \
                 WHERE tenant = $1",
                std::slice::from_ref(&t),
            )?;
            let heads = (h.int(0)?, h.int(1)?, h.int(2)?, h.int(3)?);
            Ok::<_, StoreError>(Stored {
                changes,
                history,
                events,
                change_audit_entries,
                heads,
            })
        })
        .await
        .unwrap()
}

/// `values` sorted are exactly 1..=n.
fn gap_free(mut values: Vec<i64>) -> bool {
    values.sort_unstable();
    values.iter().enumerate().all(|(i, v)| *v == i as i64 + 1)
}

async fn acknowledged_changes_survive_sigkill(db: TestDb, backend: &str) {
    let db = db.with_tenants().await;
    let database = database_arg(&db.location().await);
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("machi.log");
    let rounds: usize = std::env::var("MACHI_FAULTS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("MACHI_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("faults[{backend}]: {rounds} rounds, {WRITERS} writers, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|id| Writer {
            id,
            next: 0,
            rng: fastrand::Rng::with_seed(seed ^ (id as u64 + 1)),
            acked: Vec::new(),
            persons: Vec::new(),
            unknown: 0,
            refused: Vec::new(),
        })
        .collect();
    let started = Instant::now();
    let mut token_value = None;
    let mut kill_delays = Vec::new();
    let mut startup_kills = 0;
    for _ in 0..rounds {
        // Now and then killed while it starts (opening the database, the
        // migration check) as well.
        if rng.u8(0..4) == 0 {
            let mut server = Server::spawn(&database, &log);
            tokio::time::sleep(Duration::from_millis(rng.u64(0..=150))).await;
            server.kill();
            startup_kills += 1;
        }
        let mut server = Server::start(&database, &log).await;
        if token_value.is_none() {
            token_value = Some(Arc::new(token(&db, &server).await));
        }
        let token = token_value.clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = writers
            .drain(..)
            .map(|w| tokio::spawn(w.run(server.base.clone(), token.clone(), stop.clone())))
            .collect();
        let delay = rng.u64(KILL_AFTER_MS);
        kill_delays.push(delay);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            writers.push(t.await.expect("writer"));
        }
    }
    let fault_time = started.elapsed();

    // Once more, cleanly: the server comes up after the last kill and the
    // next change gets the next change id.
    let server = Server::start(&database, &log).await;
    let token = token_value.expect("at least one round");
    let (status, v) = exchange(
        &http(),
        Method::POST,
        &format!("{}/api/v1/tenants/{FUCHU}/changes", server.base),
        &[("authorization", token.as_str())],
        Some((
            "application/json",
            crate::contract::takahashi_family().to_string(),
        )),
    )
    .await
    .expect("a change after the last restart");
    assert_eq!(status, 201, "{v}");
    let last_change = v["change_id"].as_i64().unwrap();
    drop(server);

    let refused: Vec<&(u16, Value)> = writers.iter().flat_map(|w| &w.refused).collect();
    let acked: Vec<&Ack> = writers.iter().flat_map(|w| &w.acked).collect();
    let unknown: u64 = writers.iter().map(|w| w.unknown).sum();
    let s = stored(&db).await;

    // By marker: the changes and history rows each request left.
    let mut changes_by_marker: HashMap<&str, Vec<i64>> = HashMap::new();
    for (id, marker) in &s.changes {
        changes_by_marker.entry(marker).or_default().push(*id);
    }
    let mut history_by_marker: HashMap<&str, Vec<&HistoryRow>> = HashMap::new();
    for row in &s.history {
        history_by_marker.entry(&row.marker).or_default().push(row);
    }
    let markers: BTreeSet<&str> = changes_by_marker
        .keys()
        .chain(history_by_marker.keys())
        .copied()
        .filter(|m| m.starts_with('F'))
        .collect();
    let duplicated: Vec<&str> = markers
        .iter()
        .copied()
        .filter(|m| {
            changes_by_marker.get(m).map_or(0, Vec::len) > 1
                || history_by_marker.get(m).map_or(0, Vec::len) > 1
        })
        .collect();
    let mut lost = Vec::new();
    let mut wrong = Vec::new();
    for a in &acked {
        let ids = changes_by_marker.get(a.marker.as_str());
        let rows = history_by_marker.get(a.marker.as_str());
        match (ids.map(Vec::as_slice), rows.map(Vec::as_slice)) {
            (None, _) | (_, None) => lost.push(a.marker.clone()),
            (Some([id]), Some([row]))
                if *id != a.change_id
                    || row.change_id != a.change_id
                    || row.person != a.person
                    || !row.record.contains(&a.name) =>
            {
                wrong.push(format!("{a:?}: stored as change {id}, history row {row:?}"));
            }
            _ => {} // as acknowledged, or counted as duplicated
        }
    }
    let acked_markers: BTreeSet<&str> = acked.iter().map(|a| a.marker.as_str()).collect();
    let unacked_present = markers
        .iter()
        .filter(|m| !acked_markers.contains(*m))
        .count();
    println!(
        "faults[{backend}]: acknowledged {}, present {}, lost {}, duplicated {}, \
         present without acknowledgement {unacked_present}, unanswered {unknown}, refused {}, \
         {rounds} kills in {:.1} s (kill after {}–{} ms; {startup_kills} more while starting)",
        acked.len(),
        acked.len() - lost.len(),
        lost.len(),
        duplicated.len(),
        refused.len(),
        fault_time.as_secs_f64(),
        kill_delays.iter().min().unwrap_or(&0),
        kill_delays.iter().max().unwrap_or(&0),
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(duplicated.is_empty(), "stored twice: {duplicated:?}");
    assert!(wrong.is_empty(), "stored differently: {wrong:?}");
    assert!(
        refused.is_empty(),
        "{} requests were refused (first: {:?}); log: {}",
        refused.len(),
        refused.first(),
        log.display()
    );
    assert!(
        acked.len() >= rounds,
        "too few acknowledged changes ({}) to say anything",
        acked.len()
    );

    // Numbering: change ids, addressee numbers, history numbers per person,
    // events and access-log entries run 1, 2, 3… without a gap.
    let change_ids: Vec<i64> = s.changes.iter().map(|c| c.0).collect();
    assert!(gap_free(change_ids.clone()), "change ids have gaps");
    assert_eq!(s.heads.1, change_ids.len() as i64, "change sequence head");
    assert_eq!(last_change, change_ids.len() as i64, "the last change's id");
    let mut per_person: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for row in &s.history {
        per_person.entry(&row.person).or_default().push(row.number);
    }
    let corrected = per_person.values().filter(|n| n.len() > 1).count();
    println!(
        "faults[{backend}]: {} persons, {corrected} of them with several history numbers",
        per_person.len()
    );
    for (person, numbers) in &per_person {
        assert!(
            gap_free(numbers.clone()),
            "history numbers of {person}: {numbers:?}"
        );
    }
    let serial_of: HashMap<String, i64> = (1..=s.heads.0)
        .map(|n| {
            (
                AddresseeNumber::from_serial(n as u64).unwrap().to_string(),
                n,
            )
        })
        .collect();
    let serials: Vec<i64> = per_person
        .keys()
        .map(|a| {
            *serial_of
                .get(*a)
                .unwrap_or_else(|| panic!("addressee number {a} beyond the sequence head"))
        })
        .collect();
    assert!(gap_free(serials.clone()), "addressee numbers have gaps");
    assert_eq!(s.heads.0, serials.len() as i64, "addressee sequence head");
    let history_changes: BTreeSet<i64> = s.history.iter().map(|r| r.change_id).collect();
    assert_eq!(
        history_changes,
        change_ids.iter().copied().collect(),
        "every change has history rows, every history row its change"
    );
    assert!(
        gap_free(s.events.iter().map(|e| e.0).collect()),
        "event numbers have gaps"
    );
    assert_eq!(s.heads.2, s.events.len() as i64, "event sequence head");
    let event_changes: BTreeSet<i64> = s.events.iter().filter_map(|e| e.1).collect();
    assert_eq!(
        event_changes,
        change_ids.iter().copied().collect(),
        "every change has its event"
    );
    assert_eq!(
        s.change_audit_entries,
        change_ids.len() as i64,
        "one access-log entry per change"
    );

    // The access log's chain, checked as an operator would.
    let verdict = db.registry.verify_audit(&code(FUCHU)).await.unwrap();
    assert_eq!(verdict.first_bad, None);
    assert_eq!(verdict.entries, s.heads.3 as u64, "audit sequence head");
    let out = machi(&database, &log)
        .args(["audit", "verify", "--tenant", FUCHU])
        .stdout(Stdio::piped())
        .output()
        .expect("machi audit verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "machi audit verify: {text}");
    assert!(
        text.contains(&format!("{FUCHU}: ok, {} entries", verdict.entries)),
        "{text}"
    );
}

/// Reads under SIGKILL: several readers of one tenant read residents over
/// HTTP while the server is killed at random moments. Every read answered
/// (200) has its access-log entry (j1370) in the database afterwards —
/// the entries of concurrent reads share group commits, and a read is
/// answered only after the commit holding its entry — and the chain
/// verifies, its head at the last entry.
async fn answered_reads_are_logged_after_sigkill(db: TestDb, backend: &str) {
    let db = db.with_tenants().await;
    let database = database_arg(&db.location().await);
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("machi.log");
    let rounds: usize = std::env::var("MACHI_FAULTS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25usize)
        .div_ceil(2);
    let seed: u64 = std::env::var("MACHI_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("faults[{backend}] reads: {rounds} rounds, {WRITERS} readers, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Each reader reads persons of its own: answered reads count per person.
    let server = Server::start(&database, &log).await;
    let token = Arc::new(token(&db, &server).await);
    let mut persons: Vec<String> = Vec::new();
    for k in 0..WRITERS * 2 {
        let name = format!("閲覧　{}", zenkaku(&format!("R{k}")));
        let body = json!({
            "effective_date": "2024-04-01", "filed_on": "2024-04-01",
            "input_place": "市民課窓口", "input_terminal": format!("R{k}"),
            "command": {"type": "move_in", "previous_address": "東京都調布市小島町二丁目",
                "persons": [{"name": name, "name_kana": "エツラン　シケン",
                    "birth_date": "1985-05-05", "sex": "male", "relationship": "世帯主"}],
                "household": {"type": "new", "address": {
                    "address": format!("東京都府中市宮西町三丁目{}番地", k + 1),
                    "postal_code": "183-0056"}}}
        });
        let (status, v) = exchange(
            &http(),
            Method::POST,
            &format!("{}/api/v1/tenants/{FUCHU}/changes", server.base),
            &[("authorization", token.as_str())],
            Some(("application/json", body.to_string())),
        )
        .await
        .expect("a move-in");
        assert_eq!(status, 201, "{v}");
        persons.extend(
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["addressee_number"].as_str().unwrap().to_string()),
        );
    }
    drop(server);
    let mut answered: BTreeMap<String, i64> = BTreeMap::new();
    let (mut unknown, mut refused) = (0u64, Vec::new());
    for _ in 0..rounds {
        let mut server = Server::start(&database, &log).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|k| {
                let (base, token, stop) = (server.base.clone(), token.clone(), stop.clone());
                let mine: Vec<String> = persons.iter().skip(k).step_by(WRITERS).cloned().collect();
                let mut rng = fastrand::Rng::with_seed(rng.u64(..));
                tokio::spawn(async move {
                    let http = http();
                    let mut out = (BTreeMap::<String, i64>::new(), 0u64, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        let p = &mine[rng.usize(..mine.len())];
                        let url = format!("{base}/api/v1/tenants/{FUCHU}/residents/{p}");
                        match exchange(
                            &http,
                            Method::GET,
                            &url,
                            &[("authorization", token.as_str())],
                            None,
                        )
                        .await
                        {
                            Ok((200, _)) => *out.0.entry(p.clone()).or_default() += 1,
                            Ok((status, v)) => out.2.push((status, v)),
                            Err(_) => {
                                out.1 += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.u64(KILL_AFTER_MS))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let (counts, u, r) = t.await.expect("reader");
            for (p, n) in counts {
                *answered.entry(p).or_default() += n;
            }
            unknown += u;
            refused.extend(r);
        }
    }
    let t = code(FUCHU);
    let (logged, head): (BTreeMap<String, i64>, i64) = db
        .store
        .read(Some(&t), |tx| {
            let logged = tx
                .query(
                    "SELECT target, COUNT(*) FROM audit_log WHERE tenant = $1 \
                     AND function = 'read.resident' GROUP BY target",
                    &[Param::Text(FUCHU)],
                )?
                .iter()
                .map(|r| Ok((r.text(0)?, r.int(1)?)))
                .collect::<Result<_, StoreError>>()?;
            let head = tx
                .query_one(
                    "SELECT audit_seq FROM tenant_heads WHERE tenant = $1",
                    &[Param::Text(FUCHU)],
                )?
                .int(0)?;
            Ok::<_, StoreError>((logged, head))
        })
        .await
        .unwrap();
    let total: i64 = answered.values().sum();
    println!(
        "faults[{backend}] reads: answered {total}, logged {}, unanswered {unknown}, refused {}",
        logged.values().sum::<i64>(),
        refused.len()
    );
    assert!(refused.is_empty(), "refused reads: {:?}", refused.first());
    assert!(
        total >= rounds as i64,
        "too few answered reads ({total}) to say anything"
    );
    for (p, n) in &answered {
        let l = logged.get(p).copied().unwrap_or(0);
        assert!(l >= *n, "{p}: {n} reads answered, {l} logged");
    }
    let verdict = db.registry.verify_audit(&t).await.unwrap();
    assert_eq!(verdict.first_bad, None);
    assert_eq!(verdict.entries, head as u64, "audit sequence head");
}

/// Each test once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::sqlite().await, "sqlite").await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::postgres().await, "postgres").await; })*
        }
    };
}

on_both_backends!(
    acknowledged_changes_survive_sigkill,
    answered_reads_are_logged_after_sigkill
);

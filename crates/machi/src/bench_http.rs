//! `machi bench-http` (issue 10, item 3): the real server over loopback.
//!
//! For each backend it prepares a database with synthetic residents and an
//! API client (OAuth2 client credentials, allowed to commit directly),
//! starts `machi serve` on it as a child process, takes a token from
//! `/oauth/token` as any API client would, and drives the server with a
//! small async client at 1 and at `--connections` connections (one
//! keep-alive connection each) for a fixed time per measurement:
//!
//! - 国内転入 creates (`POST /changes`, a move-in from elsewhere in Japan);
//! - reads of one resident (`GET /residents/{n}`, each with its access-log
//!   entry, j1370);
//! - name searches (`GET /search?name=…`, logged too);
//!
//! each beside two baselines from the same run: `GET /healthz` (HTTP and
//! the server, no database) and the empty write transaction on the same
//! backend (measured in this process before the server starts). It prints
//! rate, p50 and p99 latency, the ratios, and the server's resident memory
//! under load (`VmRSS` sampled while it runs, `VmHWM` at the end).
//!
//! Before the timed runs it counts what one request of each kind asks of
//! the database, from the server's `/metrics` (`machi_db_statements`,
//! `machi_db_round_trips`, `machi_db_transactions`) around
//! [`COUNTED_REQUESTS`] requests on one connection, less what a scrape
//! itself costs: counts, which the machine's load does not change.
//!
//! Run: `cargo run --release -p machi -- bench-http` (add `--postgres URL`
//! or set `MACHI_BENCH_POSTGRES` to include PostgreSQL).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use machi_domain::change::{ChangeCommand, ChangeMeta, ChangeRequest, HouseholdTarget};
use machi_domain::ids::MunicipalityCode;

use crate::crypto::{Keyring, MasterKey};
use crate::service::grants::{ClientStep, Decision, GrantOutcome};
use crate::service::{Actor, Clock, Registry};
use crate::store::{DatabaseLocation, SqliteSync, Store};
use crate::synth::{Synth, TOWNS};

#[derive(Args, Debug, Clone)]
pub struct BenchHttpArgs {
    /// Households moved in before measuring (1–5 persons each).
    #[arg(long, default_value_t = 1000)]
    households: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Connections of the concurrent measurement (the first is one).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Port of the server under test on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also run on PostgreSQL: a server URL; a fresh database is created
    /// there and dropped after.
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    skip_sqlite: bool,
    /// On PostgreSQL, also run the server with `MACHI_PG_GROUP_COMMIT=off`
    /// (each change and access-log entry commits alone), for comparison.
    #[arg(long)]
    compare_ungrouped: bool,
    /// Only count each request's database work; no timed runs.
    #[arg(long)]
    count_only: bool,
    /// SQLite durability of the server (`full` is the default of `machi serve`).
    #[arg(long, value_enum, default_value = "full")]
    bench_sqlite_sync: SqliteSync,
}

const SCOPES: &str = "bench:residents:read bench:changes:read bench:changes:write";

pub async fn run(a: &BenchHttpArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    if a.households == 0 || a.connections == 0 || a.seconds <= 0.0 {
        anyhow::bail!("--households, --connections and --seconds must be positive");
    }
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    println!(
        "machi bench-http — the real server over loopback; {} households seeded; {:.1} s per measurement; 1 and {} connections",
        a.households, a.seconds, a.connections
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("  {cores} cores; load average before: {}", loadavg());
    if !a.skip_sqlite {
        let dir = std::env::temp_dir().join(format!("machi-bench-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("bench.sqlite");
        let label = match a.bench_sqlite_sync {
            SqliteSync::Full => "SQLite (WAL, synchronous=FULL)",
            SqliteSync::Normal => "SQLite (WAL, synchronous=NORMAL)",
        };
        let r = measure(
            label,
            &DatabaseLocation::Sqlite(path.clone()),
            path.to_string_lossy().as_ref(),
            a,
            &eras,
            &[],
        )
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        r?;
    }
    if let Some(url) = &a.postgres {
        let mut runs = vec![("PostgreSQL (group commit)", "on")];
        if a.compare_ungrouped {
            runs.push((
                "PostgreSQL (MACHI_PG_GROUP_COMMIT=off: each append commits alone)",
                "off",
            ));
        }
        for (label, grouped) in runs {
            let db = format!("machi_bench_http_{}", std::process::id());
            let fresh = crate::store::create_fresh_postgres_database(url, &db).await?;
            let r = measure(
                label,
                &DatabaseLocation::Postgres(fresh.clone()),
                &fresh,
                a,
                &eras,
                &[(crate::store::PG_GROUP_COMMIT_ENV, grouped)],
            )
            .await;
            crate::store::drop_postgres_database(url, &db).await?;
            r?;
        }
    } else {
        println!("\n(PostgreSQL skipped: pass --postgres URL or set MACHI_BENCH_POSTGRES)");
    }
    Ok(())
}

/// `/proc/loadavg`'s three figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A `VmRSS`/`VmHWM` line of `/proc/<pid>/status`, in KiB.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| {
        v.trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn meta(date: chrono::NaiveDate) -> ChangeMeta {
    ChangeMeta {
        effective_date: date.format("%Y-%m-%d").to_string(),
        filed_on: None,
        input_place: "bench".into(),
        input_terminal: "B-1".into(),
        allow_headless_household: false,
    }
}

/// A 国内転入: a new household moving in from elsewhere in Japan.
fn move_in(synth: &mut Synth, today: chrono::NaiveDate) -> ChangeRequest {
    let town = &TOWNS[0];
    loop {
        let plan = synth.household(town, today);
        if plan.abroad {
            continue;
        }
        return ChangeRequest {
            meta: meta(plan.moved_in),
            command: ChangeCommand::MoveIn {
                persons: plan.persons,
                household: HouseholdTarget::New {
                    address: plan.address,
                },
                previous_address: plan.previous_address,
            },
        };
    }
}

/// What the server is prepared with.
struct Prepared {
    code: MunicipalityCode,
    persons: Vec<String>,
    client_id: String,
    secret: String,
    empty_tx: Vec<Figure>,
    today: chrono::NaiveDate,
}

async fn prepare(
    loc: &DatabaseLocation,
    key: &MasterKey,
    a: &BenchHttpArgs,
    eras: &machi_domain::dates::EraTable,
) -> anyhow::Result<Prepared> {
    let store = Store::connect_with(loc, a.bench_sqlite_sync, Keyring::new(key)).await?;
    let r = Registry::new(store, eras.clone(), Clock::System);
    let town = &TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    r.create_tenant(code.clone(), town.name, town.prefecture)
        .await?;
    let actor = Actor::system("bench");
    let today = r.today();
    let mut synth = Synth::new(42);
    let mut persons = Vec::new();
    for _ in 0..a.households {
        let out = r.submit(&code, &move_in(&mut synth, today), &actor).await?;
        persons.extend(
            out.rows
                .iter()
                .map(|x| x.record.addressee_number.to_string()),
        );
    }
    let (client_id, secret) = r.create_client(&code, "bench", SCOPES, &actor).await?;
    // Its changes commit at once: proposed by one person, approved by another.
    let ClientStep::Proposed { grant_id, .. } = r
        .set_client_direct_commit(&code, &client_id, true, &Actor::system("bench-admin"))
        .await?
    else {
        anyhow::bail!("direct commits should be a proposal");
    };
    let out = r
        .decide_grant(
            &code,
            grant_id,
            Decision::Approve,
            "",
            &Actor::system("bench-approver"),
        )
        .await?;
    if out != GrantOutcome::Applied {
        anyhow::bail!("the direct-commit grant was not applied: {out:?}");
    }
    // Baseline: the empty write transaction on this backend.
    let mut empty_tx = Vec::new();
    for conns in [1, a.connections] {
        let stop = Instant::now() + Duration::from_secs_f64(a.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (store, code) = (r.store().clone(), code.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < stop {
                    let t = Instant::now();
                    store.empty_transaction(&code).await?;
                    lat.push(t.elapsed().as_micros() as u32);
                }
                Ok::<_, crate::store::StoreError>(lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        empty_tx.push(Figure::new(
            "empty write transaction (baseline)",
            conns,
            lat,
            started.elapsed().as_secs_f64(),
            0,
        ));
    }
    r.store().wait_for_checkpoint().await;
    Ok(Prepared {
        code,
        persons,
        client_id,
        secret,
        empty_tx,
        today,
    })
}

/// One measurement: rate and latency.
struct Figure {
    what: &'static str,
    conns: usize,
    n: usize,
    secs: f64,
    p50_us: u32,
    p99_us: u32,
    errors: u64,
}

impl Figure {
    fn new(what: &'static str, conns: usize, mut lat: Vec<u32>, secs: f64, errors: u64) -> Figure {
        lat.sort_unstable();
        let q = |p: f64| {
            if lat.is_empty() {
                0
            } else {
                lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
            }
        };
        Figure {
            what,
            conns,
            n: lat.len(),
            secs,
            p50_us: q(0.50),
            p99_us: q(0.99),
            errors,
        }
    }
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }
    fn line(&self, bases: &[(&str, &Figure)]) -> String {
        let ratios: Vec<String> = bases
            .iter()
            .map(|(name, b)| format!("{:.2}× {name}", self.rate() / b.rate().max(1e-9)))
            .collect();
        let errors = if self.errors > 0 {
            format!("; {} FAILED", self.errors)
        } else {
            String::new()
        };
        format!(
            "  {:<40} {:>2} conn {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {}{errors}",
            self.what,
            self.conns,
            self.rate(),
            f64::from(self.p50_us) / 1000.0,
            f64::from(self.p99_us) / 1000.0,
            ratios.join(", ")
        )
    }
}

/// CPU used so far by the server process and (PostgreSQL) the bench
/// database's sessions, in µs (`/proc`; see `bench_hooks`).
async fn server_cpu(pid: u32, pg: Option<&str>) -> (u64, Option<u64>) {
    let pg = pg.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        crate::bench_hooks::process_cpu_micros(&pid.to_string(), pg.as_deref())
    })
    .await
    .unwrap_or((0, None))
}

/// "CPU per request: server … µs, PostgreSQL's sessions … µs": the work
/// of one request whatever else the machine does (the client's own work
/// not counted), unlike a rate.
fn cpu_per_request(a: (u64, Option<u64>), b: (u64, Option<u64>), n: usize) -> String {
    format!(
        "  {:<49}{}",
        "",
        crate::bench_hooks::process_cpu_line(a, b, n, "request", "server")
    )
}

/// The server under test: a child `machi serve`, killed when dropped.
struct Server {
    child: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_server(
    database: &str,
    key: &MasterKey,
    a: &BenchHttpArgs,
    port: u16,
    client: &reqwest::Client,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let sync = match a.bench_sqlite_sync {
        SqliteSync::Full => "full",
        SqliteSync::Normal => "normal",
    };
    let child = std::process::Command::new(exe)
        .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
        .env("MACHI_DATABASE", database)
        .env("MACHI_MASTER_KEY", key.to_hex().as_str())
        .env("MACHI_SQLITE_SYNC", sync)
        .env(
            "MACHI_LOG",
            std::env::var("MACHI_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("MACHI_MASTER_KEY_FILE")
        .env_remove("MACHI_PORTAL_URL")
        .env_remove("MACHI_EXTRACT_TO")
        .env_remove("MACHI_METRICS_TOKEN")
        .env_remove(crate::store::PG_GROUP_COMMIT_ENV)
        .envs(env.iter().copied())
        .stdout(if std::env::var_os("MACHI_BENCH_SERVER_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .spawn()?;
    let mut server = Server { child };
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            anyhow::bail!("machi serve exited: {status}");
        }
        if Instant::now() > deadline {
            anyhow::bail!("machi serve did not answer /healthz within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each request of a measurement is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Healthz,
    Create,
    Read,
    Search,
}

impl Op {
    fn what(self) -> &'static str {
        match self {
            Op::Healthz => "GET /healthz (baseline)",
            Op::Create => "POST 国内転入 (move-in, 1–5 persons)",
            Op::Read => "GET one resident (logged)",
            Op::Search => "GET name search (20 a page, logged)",
        }
    }
}

/// Requests per kind whose database work is counted.
const COUNTED_REQUESTS: usize = 100;

/// The server's database counters: statements, round trips, transactions.
async fn db_counts(client: &reqwest::Client, base: &str) -> anyhow::Result<[f64; 3]> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut out = [0.0; 3];
    for (i, name) in [
        "machi_db_statements_total ",
        "machi_db_round_trips_total ",
        "machi_db_transactions_total ",
    ]
    .iter()
    .enumerate()
    {
        out[i] = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("/metrics has no {}", name.trim()))?;
    }
    Ok(out)
}

/// Statements, round trips and transactions of one request of `op`
/// (see the module's comment).
async fn count_op(t: &Arc<Target>, op: Op, conns: usize) -> anyhow::Result<[f64; 3]> {
    let client = crate::service::hooks::http_client(Duration::from_secs(30))?;
    let a = db_counts(&client, &t.base).await?;
    let b = db_counts(&client, &t.base).await?;
    let one = Target {
        base: t.base.clone(),
        code: t.code.clone(),
        token: t.token.clone(),
        persons: t.persons.clone(),
        today: t.today,
        limit: Some(COUNTED_REQUESTS.div_ceil(conns)),
    };
    // Seeds of their own: the creates must not repeat the timed runs' persons.
    let f = drive(&Arc::new(one), op, conns, 3600.0, 500 + conns as u64).await?;
    let total = COUNTED_REQUESTS.div_ceil(conns) * conns;
    if f.n != total || f.errors > 0 {
        anyhow::bail!(
            "counting {}: {} answered, {} failed",
            op.what(),
            f.n,
            f.errors
        );
    }
    let c = db_counts(&client, &t.base).await?;
    let mut out = [0.0; 3];
    for i in 0..3 {
        // Less one scrape's own reads (b - a).
        out[i] = (c[i] - b[i] - (b[i] - a[i])) / total as f64;
    }
    Ok(out)
}

const NAMES: [&str; 6] = ["タカハシ", "高橋", "さいとう", "渡辺", "ヨシダ", "山崎"];

struct Target {
    base: String,
    code: String,
    token: String,
    persons: Arc<Vec<String>>,
    today: chrono::NaiveDate,
    /// Stop after this many requests (per connection) instead of at the time.
    limit: Option<usize>,
}

/// Drives `op` on `conns` connections for `secs` seconds.
async fn drive(
    t: &Arc<Target>,
    op: Op,
    conns: usize,
    secs: f64,
    seed: u64,
) -> anyhow::Result<Figure> {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for k in 0..conns {
        let (t, errors, first_error) = (t.clone(), errors.clone(), first_error.clone());
        // One client per task, one request at a time: one keep-alive
        // connection per task.
        let client = crate::service::hooks::http_client(Duration::from_secs(30))?;
        tasks.push(tokio::spawn(async move {
            let mut synth = Synth::new(seed * 1000 + k as u64);
            let mut rng = fastrand::Rng::with_seed(seed * 7919 + k as u64);
            let mut lat = Vec::new();
            let mut sent = 0usize;
            while Instant::now() < stop && t.limit.is_none_or(|n| sent < n) {
                sent += 1;
                let req = match op {
                    Op::Healthz => client.get(format!("{}/healthz", t.base)),
                    Op::Create => {
                        let body = serde_json::to_vec(&move_in(&mut synth, t.today))?;
                        client
                            .post(format!("{}/api/v1/tenants/{}/changes", t.base, t.code))
                            .header("content-type", "application/json")
                            .header("authorization", &t.token)
                            .body(body)
                    }
                    Op::Read => {
                        let p = &t.persons[rng.usize(..t.persons.len())];
                        client
                            .get(format!(
                                "{}/api/v1/tenants/{}/residents/{p}",
                                t.base, t.code
                            ))
                            .header("authorization", &t.token)
                    }
                    Op::Search => {
                        let q = NAMES[rng.usize(..NAMES.len())];
                        let query = url::form_urlencoded::Serializer::new(String::new())
                            .append_pair("name", q)
                            .append_pair("limit", "20")
                            .finish();
                        client
                            .get(format!(
                                "{}/api/v1/tenants/{}/search?{query}",
                                t.base, t.code
                            ))
                            .header("authorization", &t.token)
                    }
                };
                let at = Instant::now();
                let res = req.send().await;
                let ok = match res {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await;
                        match (status.is_success(), body) {
                            (true, Ok(_)) => true,
                            (_, b) => {
                                let mut f = first_error.lock().unwrap_or_else(|e| e.into_inner());
                                if f.is_none() {
                                    *f = Some(format!(
                                        "{status}: {}",
                                        b.map(|b| String::from_utf8_lossy(&b).into_owned())
                                            .unwrap_or_default()
                                    ));
                                }
                                false
                            }
                        }
                    }
                    Err(e) => {
                        let mut f = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            *f = Some(e.to_string());
                        }
                        false
                    }
                };
                if ok {
                    lat.push(at.elapsed().as_micros() as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        println!("    ({errors} failed requests; the first: {e})");
    }
    Ok(Figure::new(op.what(), conns, lat, secs, errors))
}

async fn token(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    let res = client
        .post(format!("{base}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", id)
                .append_pair("client_secret", secret)
                .finish(),
        )
        .send()
        .await?;
    let status = res.status();
    let body = res.bytes().await?;
    if !status.is_success() {
        anyhow::bail!(
            "/oauth/token answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let t = v["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access_token in the token answer"))?;
    Ok(format!("Bearer {t}"))
}

async fn measure(
    label: &str,
    loc: &DatabaseLocation,
    database: &str,
    a: &BenchHttpArgs,
    eras: &machi_domain::dates::EraTable,
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    let key = MasterKey::generate()?;
    let seeded = Instant::now();
    let p = prepare(loc, &key, a, eras).await?;
    println!(
        "\n{label}: {} persons in {} households (seeded in {:.1} s)",
        p.persons.len(),
        a.households,
        seeded.elapsed().as_secs_f64()
    );
    let port = if a.port == 0 { free_port()? } else { a.port };
    let probe = crate::service::hooks::http_client(Duration::from_secs(5))?;
    let server = start_server(database, &key, a, port, &probe, env).await?;
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{port}");
    let target = Arc::new(Target {
        token: token(&probe, &base, &p.client_id, &p.secret).await?,
        base,
        code: p.code.to_string(),
        persons: Arc::new(p.persons),
        today: p.today,
        limit: None,
    });
    println!(
        "  database work per request (server's /metrics around {COUNTED_REQUESTS} requests; at {} connections a group commit's share):",
        a.connections
    );
    for op in [Op::Read, Op::Search, Op::Create] {
        for conns in [1, a.connections] {
            let [st, rt, tx] = count_op(&target, op, conns).await?;
            println!(
                "    {:<40} {conns:>2} conn {st:>5.1} statements  {rt:>5.1} round trips  {tx:>4.2} transactions",
                op.what()
            );
        }
    }
    if a.count_only {
        return Ok(());
    }
    let pg_url = matches!(loc, DatabaseLocation::Postgres(_)).then_some(database);
    let idle_rss = proc_kib(pid, "VmRSS").unwrap_or(0);
    // Resident memory sampled while the load runs.
    let (peak, sampling) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(true)));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = proc_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    println!(
        "  {:<40} {:>7} {:>10}  {:>9}  {:>9}  ratios",
        "operation", "", "rate", "p50", "p99"
    );
    let mut seed = 1;
    for (i, conns) in [1, a.connections].into_iter().enumerate() {
        let load = loadavg();
        let cpu0 = server_cpu(pid, pg_url).await;
        let healthz = drive(&target, Op::Healthz, conns, a.seconds, seed).await?;
        let cpu1 = server_cpu(pid, pg_url).await;
        let empty = &p.empty_tx[i];
        println!("  — {conns} connection(s); load average {load}");
        println!("{}", empty.line(&[]));
        println!("{}", healthz.line(&[]));
        println!("{}", cpu_per_request(cpu0, cpu1, healthz.n));
        for op in [Op::Create, Op::Read, Op::Search] {
            seed += 1;
            let cpu0 = server_cpu(pid, pg_url).await;
            let f = drive(&target, op, conns, a.seconds, seed).await?;
            let cpu1 = server_cpu(pid, pg_url).await;
            println!("{}", f.line(&[("empty tx", empty), ("/healthz", &healthz)]));
            println!("{}", cpu_per_request(cpu0, cpu1, f.n));
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    println!(
        "  server memory: {:.1} MiB resident idle, {:.1} MiB at most under load (VmRSS sampled every 0.1 s), high-water mark {:.1} MiB (VmHWM)",
        idle_rss as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        proc_kib(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
    );
    println!("  load average after: {}", loadavg());
    drop(server);
    Ok(())
}

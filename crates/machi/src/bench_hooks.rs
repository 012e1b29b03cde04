//! `machi bench-hooks`: webhook deliveries per second to local subscribers
//! and the lag from an event's commit to its delivery, beside a baseline
//! from the same run: plain HTTP POSTs of the same bodies from the same
//! process to the same receivers, as many in flight as the worker has.
//!
//! Run: `cargo run --release -p machi -- bench-hooks` (add `--postgres URL`
//! or set `MACHI_BENCH_POSTGRES` to run on PostgreSQL instead of SQLite).
//! The worker's settings are `machi serve`'s (`MACHI_WEBHOOK_CONCURRENCY`
//! and the other variables of [`WorkerConfig::from_env`] apply). Before
//! the subscribers exist, the registry alone takes the same offered load:
//! the change rate this machine sustains without any webhook work.
//! Targets (issue 12): deliveries ≥ 50 % of the baseline rate; lag p99 ≤
//! 500 ms while the registry takes 500 changes/s. The lag counts only if
//! the registry sustained the offered rate while the worker ran: the run
//! prints the changes/s it achieved beside the offered rate, and says
//! whether each target is met. Every phase prints the machine's load
//! average (the machine may be shared). During the two load phases it
//! samples the connection pool and, on PostgreSQL, `pg_stat_activity`
//! (what the sessions of the bench's database are doing or waiting for)
//! and the commits per second of the whole database.
//!
//! `--count-only` instead counts the database work of one delivery
//! (statements, PostgreSQL round trips, transactions), as `bench-http
//! --count-only` does per request: e.g. `machi bench-hooks --count-only
//! --backlog 200 --rate 50 --seconds 2` in a debug build.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use machi_domain::change::{ChangeCommand, ChangeMeta, ChangeRequest, HouseholdTarget};
use machi_domain::ids::MunicipalityCode;

use crate::crypto::Keyring;
use crate::service::hooks::{HookPolicy, NewSubscription, WorkerConfig, spawn_worker};
use crate::service::{Actor, Clock, Registry};
use crate::store::{DatabaseLocation, SqliteSync, Store};
use crate::synth::{Synth, TOWNS};

#[derive(Args, Debug, Clone)]
pub struct BenchHooksArgs {
    /// Local subscribers (each its own HTTP server on loopback).
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Events committed before the worker starts (each goes to every subscriber).
    #[arg(long, default_value_t = 500)]
    backlog: usize,
    /// Changes per second offered while measuring the lag.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of that load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Run on PostgreSQL (a fresh database on this server, dropped after) instead of SQLite.
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// SQLite durability for the run (`full` is the default of `machi serve`).
    #[arg(long, value_enum, default_value = "full")]
    bench_sqlite_sync: SqliteSync,
    /// Only count the database work of one delivery (statements,
    /// PostgreSQL round trips, transactions) while the worker drains the
    /// backlog and while changes come one at a time (`--rate` per second
    /// for `--seconds`); no timed figures. Counts, not time: a debug build
    /// on a loaded machine gives the same.
    #[arg(long)]
    count_only: bool,
    /// PostgreSQL, for a comparison only: drops the foreign keys of
    /// `webhook_attempts` in the bench's fresh database before measuring
    /// (what the two key checks of every attempt row cost).
    #[arg(long)]
    without_attempt_fks: bool,
    /// Municipalities (tenants) the two load phases spread their changes
    /// over, round robin (at most the synthetic towns' number); each has
    /// `--subscribers` subscriptions to the same receivers. The backlog
    /// and the baseline stay on the first. One tenant's changes run one
    /// after another; a shared deployment takes many tenants' at once.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
}

/// What a receiver saw: (sequence, commit time in µs, arrival in µs, the
/// tenant's code as a number).
type Seen = Arc<Mutex<Vec<(i64, i64, i64, u32)>>>;

/// Whether every receiver saw each tenant's events in order.
fn in_order(seen: &[Seen]) -> bool {
    seen.iter().all(|s| {
        let v = s.lock().unwrap_or_else(|p| p.into_inner());
        let mut last: std::collections::HashMap<u32, i64> = Default::default();
        v.iter().all(|(seq, _, _, t)| {
            let before = last.insert(*t, *seq).unwrap_or(i64::MIN);
            before < *seq
        })
    })
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

async fn receiver(seen: Seen) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: bytes::Bytes| {
            let seen = seen.clone();
            async move {
                let at = now_micros();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let seq = v["sequence"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                    let tenant = v["source"]
                        .as_str()
                        .and_then(|s| s.rsplit('/').next()?.parse::<u32>().ok())
                        .unwrap_or(0);
                    let time = v["time"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map_or(at, |t| t.timestamp_micros());
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((seq, time, at, tenant));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/hook"))
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

/// The load average (1, 5, 15 minutes) as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Samples, every 20 ms until stopped, the store's connection pool and
/// (PostgreSQL) what the bench database's sessions are doing.
struct Probe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<ProbeSummary>,
}

#[derive(Default)]
struct ProbeSummary {
    samples: usize,
    in_use: f64,
    waiting: f64,
    /// (what, in samples): sessions by state, wait event and statement.
    activity: std::collections::HashMap<String, usize>,
    activity_samples: usize,
    commits_per_s: Option<f64>,
}

impl Probe {
    fn start(r: &Registry, pg: Option<&str>) -> Probe {
        let store = r.store().clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pg = pg.map(str::to_string);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = ProbeSummary::default();
            let mut client = pg.and_then(|u| postgres::Client::connect(&u, postgres::NoTls).ok());
            let commits = |c: &mut postgres::Client| -> Option<i64> {
                c.query_one(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                    &[],
                )
                .ok()
                .map(|r| r.get(0))
            };
            let first = client.as_mut().and_then(commits);
            let started = Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for p in store.state().pools {
                    out.in_use += f64::from(p.in_use);
                    out.waiting += p.waiting as f64;
                }
                out.samples += 1;
                if let Some(c) = client.as_mut()
                    && let Ok(rows) = c.query(
                        "SELECT COALESCE(state, ''), COALESCE(wait_event_type, 'CPU'), COALESCE(wait_event, ''), \
                         left(regexp_replace(query, '\\s+', ' ', 'g'), 70) \
                         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                {
                    out.activity_samples += 1;
                    for row in rows {
                        let (state, kind, event, query): (String, String, String, String) =
                            (row.get(0), row.get(1), row.get(2), row.get(3));
                        if state == "idle" {
                            continue;
                        }
                        let what = format!("{state:<20} {kind}:{event:<16} {query}");
                        *out.activity.entry(what).or_default() += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let (Some(c), Some(first)) = (client.as_mut(), first) {
                // The statistics reach pg_stat_database within a second.
                std::thread::sleep(Duration::from_millis(1100));
                if let Some(last) = commits(c) {
                    out.commits_per_s =
                        Some((last - first) as f64 / (started.elapsed().as_secs_f64() - 1.1));
                }
            }
            out
        });
        Probe { stop, thread }
    }

    fn finish(self) -> ProbeSummary {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl ProbeSummary {
    fn print(&self, phase: &str) {
        let n = self.samples.max(1) as f64;
        println!(
            "    {phase}: pool connections in use {:.1} on average, callers waiting for one {:.1}",
            self.in_use / n,
            self.waiting / n
        );
        if let Some(c) = self.commits_per_s {
            println!("    {phase}: PostgreSQL commits in the bench database {c:.0} /s");
        }
        if self.activity_samples > 0 {
            let mut top: Vec<(&String, &usize)> = self.activity.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            println!(
                "    {phase}: busy sessions on average (state, wait event or CPU, statement), of {} samples:",
                self.activity_samples
            );
            for (what, k) in top.into_iter().take(10) {
                println!(
                    "      {:>5.2}  {what}",
                    *k as f64 / self.activity_samples as f64
                );
            }
        }
    }
}

/// Subscribes the bench client of tenant `code` to every receiver in
/// `urls`, all types, from the tenant's head now; that position.
async fn subscribe_all(
    r: &Registry,
    code: &MunicipalityCode,
    urls: &[String],
    actor: &Actor,
) -> anyhow::Result<i64> {
    let mut start = 0;
    for url in urls {
        start = r
            .create_subscription(
                code,
                "bench-client",
                NewSubscription {
                    url: url.clone(),
                    types: vec![],
                    after: None,
                },
                actor,
            )
            .await?
            .position;
    }
    Ok(start)
}

/// CPU time used so far, in µs: by this process, and (PostgreSQL) by the
/// server processes of the bench database's sessions (found in
/// `pg_stat_activity`; the pool keeps them for the run). Read from
/// `/proc` (Linux; USER_HZ is 100): a figure per delivery that other work
/// on the machine does not change much, unlike a rate.
fn cpu_micros(pg: Option<&str>) -> (u64, Option<u64>) {
    process_cpu_micros("self", pg)
}

/// [`cpu_micros`] of the process `pid` (`self`: this one).
pub(crate) fn process_cpu_micros(pid: &str, pg: Option<&str>) -> (u64, Option<u64>) {
    fn ticks(pid: &str) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }
    let own = ticks(pid).unwrap_or(0) * 10_000;
    let server = pg.map(|url| {
        let url = url.to_string();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).ok()?;
            let rows = c
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .ok()?;
            Some(
                rows.iter()
                    .filter_map(|r| ticks(&r.get::<_, i32>(0).to_string()))
                    .sum::<u64>()
                    * 10_000,
            )
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or(0)
    });
    (own, server)
}

/// "CPU per {what}: this process … µs, PostgreSQL's sessions … µs" between
/// two [`cpu_micros`] readings over `n` items.
fn cpu_line(a: (u64, Option<u64>), b: (u64, Option<u64>), n: usize, what: &str) -> String {
    process_cpu_line(a, b, n, what, "this process")
}

/// [`cpu_line`] naming the measured process `process` ("server" for
/// bench-http's child `machi serve`).
pub(crate) fn process_cpu_line(
    a: (u64, Option<u64>),
    b: (u64, Option<u64>),
    n: usize,
    what: &str,
    process: &str,
) -> String {
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / n.max(1) as f64;
    let server = match (a.1, b.1) {
        (Some(x), Some(y)) => format!(", PostgreSQL's sessions {:.0} µs", per(x, y)),
        _ => String::new(),
    };
    format!("CPU per {what}: {process} {:.0} µs{server}", per(a.0, b.0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(a: &BenchHooksArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    let policy = HookPolicy {
        allow_insecure_local: true,
        allow_private: false,
        require_resolvable: false,
    };
    if let Some(url) = &a.postgres {
        let db = format!("machi_bench_hooks_{}", std::process::id());
        let fresh = crate::store::create_fresh_postgres_database(url, &db).await?;
        let store = Store::connect(
            &DatabaseLocation::Postgres(fresh.clone()),
            Keyring::ephemeral()?,
        )
        .await?;
        let label = if a.without_attempt_fks {
            let url = fresh.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
                c.batch_execute(
                    "DO $$ DECLARE c record; BEGIN \
                     FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'webhook_attempts'::regclass AND contype = 'f' LOOP \
                     EXECUTE format('ALTER TABLE webhook_attempts DROP CONSTRAINT %I', c.conname); END LOOP; END $$",
                )?;
                Ok(())
            })
            .await??;
            "PostgreSQL (comparison: webhook_attempts without its foreign keys)"
        } else {
            "PostgreSQL"
        };
        let r = Registry::new(store, eras, Clock::System).with_hook_policy(policy);
        let result = measure(label, &r, a, Some(&fresh)).await;
        crate::store::drop_postgres_database(url, &db).await?;
        result
    } else {
        let dir = std::env::temp_dir().join(format!("machi-bench-hooks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::connect_with(
            &DatabaseLocation::Sqlite(dir.join("bench.sqlite")),
            a.bench_sqlite_sync,
            Keyring::ephemeral()?,
        )
        .await?;
        let r = Registry::new(store, eras, Clock::System).with_hook_policy(policy);
        let label = match a.bench_sqlite_sync {
            SqliteSync::Full => "SQLite (WAL, synchronous=FULL)",
            SqliteSync::Normal => "SQLite (WAL, synchronous=NORMAL)",
        };
        let result = measure(label, &r, a, None).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

/// Offers changes at `rate` per second for `seconds`, by as many
/// submitters as it takes (each change waits for its commit); the changes
/// committed and the seconds it took.
async fn offer_load<C>(
    r: &Registry,
    targets: &[(MunicipalityCode, C)],
    actor: &Actor,
    rate: u64,
    seconds: u64,
) -> (usize, f64)
where
    C: Fn() -> ChangeRequest + Clone + Send + Sync + 'static,
{
    let targets: Arc<Vec<(MunicipalityCode, C)>> = Arc::new(targets.to_vec());
    let offered = (rate * seconds) as usize;
    let submitters = 16usize;
    let started = Instant::now();
    let mut load = tokio::task::JoinSet::new();
    for k in 0..submitters {
        let (r, targets, actor) = (r.clone(), targets.clone(), actor.clone());
        let rate = rate.max(1);
        load.spawn(async move {
            let mut done = 0usize;
            let mut i = k;
            while i < offered {
                // Change i is due at i / rate seconds.
                let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                // Change i goes to tenant i mod n.
                let (code, change) = &targets[i % targets.len()];
                if r.submit(code, &change(), &actor).await.is_ok() {
                    done += 1;
                }
                i += submitters;
            }
            done
        });
    }
    let mut committed = 0usize;
    while let Some(n) = load.join_next().await {
        committed += n.unwrap_or(0);
    }
    (committed, started.elapsed().as_secs_f64())
}

/// The database work counted between two [`crate::store::counts`].
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    statements: f64,
    round_trips: f64,
    transactions: f64,
}

impl Work {
    fn between(a: (u64, u64, u64), b: (u64, u64, u64)) -> Work {
        Work {
            statements: b.0.saturating_sub(a.0) as f64,
            round_trips: b.1.saturating_sub(a.1) as f64,
            transactions: b.2.saturating_sub(a.2) as f64,
        }
    }

    fn per(self, n: usize) -> Work {
        let n = n.max(1) as f64;
        Work {
            statements: self.statements / n,
            round_trips: self.round_trips / n,
            transactions: self.transactions / n,
        }
    }

    fn minus(self, o: Work) -> Work {
        Work {
            statements: (self.statements - o.statements).max(0.0),
            round_trips: (self.round_trips - o.round_trips).max(0.0),
            transactions: (self.transactions - o.transactions).max(0.0),
        }
    }

    fn times(self, k: f64) -> Work {
        Work {
            statements: self.statements * k,
            round_trips: self.round_trips * k,
            transactions: self.transactions * k,
        }
    }

    fn line(self, pg: bool) -> String {
        let rt = if pg {
            format!("{:>6.3} round trips", self.round_trips)
        } else {
            "     — round trips (in process)".to_string()
        };
        format!(
            "{:>7.3} statements  {rt}  {:>6.3} transactions",
            self.statements, self.transactions
        )
    }
}

/// Submits `n` changes one at a time, `rate` per second at most.
async fn submit_paced<C>(
    r: &Registry,
    code: &MunicipalityCode,
    actor: &Actor,
    change: &C,
    n: usize,
    rate: u64,
) -> anyhow::Result<()>
where
    C: Fn() -> ChangeRequest,
{
    let started = Instant::now();
    for i in 0..n {
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate.max(1));
        tokio::time::sleep_until(due.into()).await;
        r.submit(code, &change(), actor).await?;
    }
    Ok(())
}

/// `--count-only`: what one delivered event costs the database, counted
/// by the store's own counters ([`crate::store::counts`], every statement
/// this process sends). Two cases: the worker draining a backlog (chunks
/// of [`crate::service::hooks::CHUNK`]), and changes committed one at a
/// time while the worker is caught up (a few events per read). In the
/// second the registry's own work per change, counted alone before with
/// the same pacing, is subtracted.
async fn count_work<C>(
    label: &str,
    r: &Registry,
    a: &BenchHooksArgs,
    pg: bool,
    code: &MunicipalityCode,
    actor: &Actor,
    change: C,
) -> anyhow::Result<()>
where
    C: Fn() -> ChangeRequest,
{
    let n_subs = a
        .subscribers
        .clamp(1, crate::service::hooks::MAX_SUBSCRIPTIONS);
    let config = WorkerConfig::from_env().map_err(anyhow::Error::msg)?;
    let live = (a.rate * a.seconds) as usize;
    println!(
        "\nmachi bench-hooks --count-only — {label}, {n_subs} local subscribers, worker: {} in flight, chunks of {}",
        config.concurrency,
        crate::service::hooks::CHUNK
    );
    // The registry alone, paced as in the live phase below.
    let c0 = crate::store::counts();
    submit_paced(r, code, actor, &change, live, a.rate).await?;
    let per_change = Work::between(c0, crate::store::counts()).per(live);
    println!(
        "  registry alone, per change ({live} changes, one at a time, {} /s):  {}",
        a.rate,
        per_change.line(pg)
    );
    let mut seen: Vec<Seen> = Vec::new();
    for _ in 0..n_subs {
        let s: Seen = Arc::default();
        let url = receiver(s.clone()).await?;
        r.create_subscription(
            code,
            "bench-client",
            NewSubscription {
                url,
                types: vec![],
                after: None,
            },
            actor,
        )
        .await?;
        seen.push(s);
    }
    for _ in 0..a.backlog {
        r.submit(code, &change(), actor).await?;
    }
    let total = |seen: &[Seen]| -> usize {
        seen.iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    };
    // Waits until `want` deliveries arrived, then a little longer for the
    // last chunks' records (written right after their last request).
    let wait = |want: usize, seen: Vec<Seen>| async move {
        let deadline = Instant::now() + Duration::from_secs(600);
        while total(&seen) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        total(&seen)
    };
    let want = a.backlog * n_subs;
    let c1 = crate::store::counts();
    let worker = spawn_worker(r.clone(), config.clone())?;
    let got = wait(want, seen.clone()).await;
    let drain = Work::between(c1, crate::store::counts());
    println!(
        "  backlog drain, per delivery ({} events × {n_subs} subscribers, {got} of {want} delivered):  {}",
        a.backlog,
        drain.per(got).line(pg)
    );
    let c2 = crate::store::counts();
    submit_paced(r, code, actor, &change, live, a.rate).await?;
    let want2 = want + live * n_subs;
    let got2 = wait(want2, seen.clone()).await - got;
    let all = Work::between(c2, crate::store::counts());
    let worker_work = all.minus(per_change.times(live as f64));
    println!(
        "  one change at a time ({live} at {} /s), per delivery, the registry's work subtracted ({got2} of {} delivered):  {}",
        a.rate,
        live * n_subs,
        worker_work.per(got2).line(pg)
    );
    drop(worker);
    println!(
        "  in order per subscriber: {}",
        if in_order(&seen) { "yes" } else { "NO" }
    );
    Ok(())
}

async fn measure(
    label: &str,
    r: &Registry,
    a: &BenchHooksArgs,
    pg: Option<&str>,
) -> anyhow::Result<()> {
    let n_subs = a
        .subscribers
        .clamp(1, crate::service::hooks::MAX_SUBSCRIPTIONS);
    let n_tenants = a.tenants.clamp(1, TOWNS.len());
    let town = &TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let actor = Actor::system("bench");
    let today = r.today();
    let synth = Arc::new(Mutex::new(Synth::new(7)));
    let change_in = |town: &'static crate::synth::Town| {
        let synth = synth.clone();
        move || {
            let plan = synth
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .household(town, today);
            ChangeRequest {
                meta: meta(plan.moved_in),
                command: ChangeCommand::MoveIn {
                    persons: plan.persons,
                    household: HouseholdTarget::New {
                        address: plan.address,
                    },
                    previous_address: plan.previous_address,
                },
            }
        }
    };
    let mut targets = Vec::new();
    for town in &TOWNS[..n_tenants] {
        let c: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        r.create_tenant(c.clone(), town.name, town.prefecture)
            .await?;
        targets.push((c, change_in(town)));
    }
    let change = targets[0].1.clone();
    if a.count_only {
        return count_work(label, r, a, pg.is_some(), &code, &actor, change).await;
    }
    // The registry alone (no subscription, no worker): the change rate it
    // sustains on this machine at the offered rate.
    let config = WorkerConfig::from_env().map_err(anyhow::Error::msg)?;
    let offered = (a.rate * a.seconds) as usize;
    // Sustained: every offered change committed, within 5 % of the time
    // the offered rate takes.
    let sustained = |n: usize, secs: f64| n == offered && secs <= a.seconds as f64 * 1.05;
    let yes = |b: bool| if b { "yes" } else { "NO" };
    // Each phase is printed when it ends, so that a slow phase shows
    // where the time goes while the run is still on.
    println!(
        "\nmachi bench-hooks — {label}, {n_subs} local subscribers, worker: {} in flight; load phases over {n_tenants} tenant(s), {n_subs} subscriptions each",
        config.concurrency
    );
    let load_alone = load_average();
    let probe = Probe::start(r, pg);
    let cpu0 = cpu_micros(pg);
    let (alone, alone_secs) = offer_load(r, &targets, &actor, a.rate, a.seconds).await;
    let cpu1 = cpu_micros(pg);
    let probe_alone = probe.finish();
    let alone_rate = alone as f64 / alone_secs.max(1e-9);
    println!(
        "  registry alone (no subscriber, no worker): {alone} of {offered} changes committed in {alone_secs:.2} s = {alone_rate:.0} changes/s, offered {} /s: sustained {}  [load {load_alone}]",
        a.rate,
        yes(sustained(alone, alone_secs))
    );
    println!(
        "    registry alone: {}",
        cpu_line(cpu0, cpu1, alone, "change")
    );
    probe_alone.print("registry alone");
    let mut seen: Vec<Seen> = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n_subs {
        let s: Seen = Arc::default();
        urls.push(receiver(s.clone()).await?);
        seen.push(s);
    }
    // Where the subscriptions start: after the registry-alone phase's events.
    let start = subscribe_all(r, &code, &urls, &actor).await?;
    // The backlog: committed before any worker runs.
    for _ in 0..a.backlog {
        r.submit(&code, &change(), &actor).await?;
    }
    let total = |seen: &[Seen]| -> usize {
        seen.iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    };

    // Baseline: the same bodies (the events as CloudEvents) POSTed by a
    // plain client, as many in flight as the worker delivers at once.
    // The worker as `machi serve` runs it (MACHI_WEBHOOK_* variables apply).
    let t = code.clone();
    let events = r
        .store()
        .read(Some(&code), move |tx| {
            crate::store::records::events_after(tx, &t, start, i64::MAX)
        })
        .await?;
    let bodies: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            let ce = crate::service::events::cloud_event(code.as_str(), e, |m| {
                chrono::DateTime::<chrono::Utc>::from_timestamp_micros(m)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            });
            (ce.id.clone(), serde_json::to_vec(&ce).unwrap_or_default())
        })
        .collect();
    let client = crate::service::hooks::http_client(config.request_timeout)?;
    let load_baseline = load_average();
    let cpu_before = cpu_micros(None).0;
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for url in &urls {
        // One sender per receiver, in order (as a subscription is served).
        let (client, url, bodies, slots) =
            (client.clone(), url.clone(), bodies.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            for (id, body) in bodies {
                let _ = client
                    .post(&url)
                    .header("content-type", "application/cloudevents+json")
                    .header("webhook-id", id)
                    .body(body)
                    .send()
                    .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let baseline_secs = started.elapsed().as_secs_f64();
    let baseline_n = bodies.len() * n_subs;
    let post_cpu = (cpu_micros(None).0 - cpu_before) as f64 / baseline_n.max(1) as f64;
    let baseline_rate = baseline_n as f64 / baseline_secs.max(1e-9);
    println!(
        "  baseline: plain POSTs of the same {} events to each subscriber  {:>9.0} /s  ({} in {:.2} s)  [load {load_baseline}]",
        bodies.len(),
        baseline_rate,
        baseline_n,
        baseline_secs
    );
    for s in &seen {
        s.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    // Deliveries: the worker drains the backlog to every subscriber.
    let load_hooks = load_average();
    let probe = Probe::start(r, pg);
    let counted = crate::store::counts();
    let reads_before = crate::service::hooks::counters().reads.get();
    let cpu_before = cpu_micros(pg);
    let started = Instant::now();
    let worker = spawn_worker(r.clone(), config.clone())?;
    let want = bodies.len() * n_subs;
    let deadline = Instant::now() + Duration::from_secs(600);
    while total(&seen) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hook_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_micros(pg);
    let drain_work = Work::between(counted, crate::store::counts());
    let probe_drain = probe.finish();
    let hook_n = total(&seen);
    let hook_rate = hook_n as f64 / hook_secs.max(1e-9);
    let ratio = 100.0 * hook_rate / baseline_rate.max(1e-9);
    println!(
        "  webhook deliveries (signed, recorded, in order)          {:>9.0} /s  ({} in {:.2} s)  = {ratio:.0} % of baseline (target ≥ 50 %: {})  [load {load_hooks}]",
        hook_rate,
        hook_n,
        hook_secs,
        if ratio >= 50.0 { "met" } else { "NOT met" }
    );
    println!(
        "    deliveries: per delivery {}",
        drain_work.per(total(&seen)).line(pg.is_some())
    );
    let reads = crate::service::hooks::counters().reads.get() - reads_before;
    println!(
        "    deliveries: {reads} reads of events from the outbox ({:.3} per delivery; shared reads {})",
        reads as f64 / hook_n.max(1) as f64,
        if config.shared_reads { "on" } else { "off" }
    );
    println!(
        "    {}; per plain POST {post_cpu:.0} µs (both with the receivers' share)",
        cpu_line(cpu_before, cpu_after, hook_n, "delivery")
    );
    probe_drain.print("deliveries");
    for s in &seen {
        s.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    // Lag under load: changes offered at `rate` per second for `seconds`,
    // by as many submitters as it takes (each change waits for its commit).
    let load_under = load_average();
    let probe = Probe::start(r, pg);
    // The other tenants' subscriptions, from their heads now, to the same receivers.
    for (c, _) in &targets[1..] {
        subscribe_all(r, c, &urls, &actor).await?;
    }
    let cpu0 = cpu_micros(pg);
    let (committed, load_secs) = offer_load(r, &targets, &actor, a.rate, a.seconds).await;
    let cpu1 = cpu_micros(pg);
    let probe_under = probe.finish();
    let change_rate = committed as f64 / load_secs.max(1e-9);
    println!(
        "  under load (worker delivering): {committed} of {offered} changes committed in {load_secs:.2} s = {change_rate:.0} changes/s, offered {} /s: sustained {}  [load {load_under}]",
        a.rate,
        yes(sustained(committed, load_secs))
    );
    println!(
        "    under load: {} (its {n_subs} deliveries included, while they keep up)",
        cpu_line(cpu0, cpu1, committed, "change")
    );
    probe_under.print("under load");
    let want = committed * n_subs;
    let deadline = Instant::now() + Duration::from_secs(120);
    while total(&seen) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(worker);
    let mut lags: Vec<f64> = seen
        .iter()
        .flat_map(|s| {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(_, commit, at, _)| (at - commit) as f64 / 1000.0)
                .collect::<Vec<_>>()
        })
        .collect();
    lags.sort_by(|x, y| x.total_cmp(y));
    let in_order = in_order(&seen);

    let (p50, p99) = (percentile(&lags, 0.50), percentile(&lags, 0.99));
    println!(
        "  lag commit → delivery: p50 {p50:.1} ms, p99 {p99:.1} ms over {} deliveries; {} of {} delivered; in order per subscriber: {}",
        lags.len(),
        lags.len(),
        committed * n_subs,
        yes(in_order)
    );
    let lag_met = p99 <= 500.0 && lags.len() == committed * n_subs;
    let verdict = match (lag_met, sustained(committed, load_secs)) {
        (true, true) => "met".to_string(),
        (true, false) => format!(
            "NOT met: p99 within 500 ms, but the registry took {change_rate:.0} changes/s, not the {} offered",
            a.rate
        ),
        (false, _) => "NOT met".to_string(),
    };
    println!(
        "  target lag p99 ≤ 500 ms while the registry takes {} changes/s: {verdict}  [load now {}]",
        a.rate,
        load_average()
    );
    Ok(())
}
